-- 006_ingest_drops: what the ingest did not store, and why (nothing dropped silently).
--
-- One row per reason a corpus segment was not stored as a sentence (ingest/corpus.py
-- DROP_REASONS): 'too short' (< --min-words), 'too long' (> --max-words, after
-- re-splitting), 'duplicate' (--dedupe), 'no tokens' (nothing the model keeps), 'not
-- sampled' (left out by the seeded --max-sentences sample). Reasons with no segment
-- have no row. Written with the run; a run made before this table has no rows.
CREATE TABLE IF NOT EXISTS ingest_drops (
    reason    VARCHAR PRIMARY KEY,
    sentences BIGINT NOT NULL,   -- segments not stored for this reason
    words     BIGINT NOT NULL    -- their words (whitespace-separated)
);

-- How the corpus was cut: segments after sentence splitting, and over-long segments cut
-- again (CorpusConfig.resplit) into how many parts. NULL for runs made before.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_segments BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_resplit BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_resplit_into BIGINT;

INSERT INTO schema_version (version, name) VALUES (6, 'ingest_drops') ON CONFLICT DO NOTHING;
