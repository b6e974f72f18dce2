-- 003_sentence_metadata: labels that come with a sentence, and the sense probe's results.
--
-- sentences.metadata is a JSON object per sentence, NULL when the corpus gave none: the
-- built-in `wordnet` corpus stores the sense each example sentence shows (lemma, word,
-- synset, pos, lexname, gloss); JSONL/CSV/Parquet inputs fill it from the fields named
-- by `ingest --metadata-fields` (or `--label-field`).

ALTER TABLE sentences ADD COLUMN IF NOT EXISTS metadata JSON;

-- `factorscope probe`: how well each probed word's senses separate, per layer, in the
-- codes of one dictionary and in the raw hidden states (factorscope/stages/probe.py).
CREATE TABLE IF NOT EXISTS sense_probe (
    dictionary_id  INTEGER NOT NULL,    -- the dictionary whose codes were probed
    lemma          VARCHAR NOT NULL,    -- the probed word (see probe settings: key)
    layer          SMALLINT NOT NULL,
    representation VARCHAR NOT NULL,    -- 'codes' | 'states'
    n_occurrences  INTEGER NOT NULL,
    n_senses       INTEGER NOT NULL,
    accuracy       DOUBLE NOT NULL,     -- leave-one-out 1-nearest-neighbour sense accuracy (cosine)
    chance         DOUBLE NOT NULL,     -- a random neighbour's accuracy: sum n_s(n_s-1) / n(n-1)
    off_word_share DOUBLE,              -- codes: share whose top factor is not the layer-0 word factor
    word_factor    INTEGER,             -- codes: the word's layer-0 factor (mode of the top factors)
    PRIMARY KEY (dictionary_id, lemma, layer, representation)
);

-- One row per probed occurrence and layer: what the Senses page draws.
CREATE TABLE IF NOT EXISTS sense_occurrences (
    dictionary_id INTEGER NOT NULL,
    lemma         VARCHAR NOT NULL,
    occurrence    INTEGER NOT NULL,     -- 0.. within the lemma, grouped by sense
    sense         VARCHAR NOT NULL,     -- the sense label (e.g. a lexname or a synset id)
    synset        VARCHAR,
    gloss         VARCHAR,
    sentence_idx  INTEGER,              -- the run's sentence, NULL for a --corpus sentence
    text          VARCHAR NOT NULL,
    word_start    INTEGER NOT NULL,     -- the probed word's characters in text
    word_end      INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    factor        INTEGER,              -- top factor (largest alpha), NULL when all codes are 0
    alpha         FLOAT,
    PRIMARY KEY (dictionary_id, lemma, occurrence, layer)
);

-- The settings and source of the last probe of each dictionary.
CREATE TABLE IF NOT EXISTS sense_probe_runs (
    dictionary_id INTEGER PRIMARY KEY,
    source        VARCHAR NOT NULL,     -- 'run' (sentences.metadata) or the --corpus given
    settings      JSON NOT NULL,
    n_lemmas      INTEGER NOT NULL,
    n_skipped     INTEGER NOT NULL,     -- occurrences whose word the tokenizer did not yield
    seconds       DOUBLE NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

INSERT INTO schema_version (version, name) VALUES (3, 'sentence_metadata') ON CONFLICT DO NOTHING;
