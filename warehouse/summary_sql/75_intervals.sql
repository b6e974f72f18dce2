-- summary_intervals: the factor page's contexts sampled from activation intervals
-- (sae_vis style), drawn once per refresh instead of on every page view. (0, max alpha]
-- of each (factor, layer) is cut into $n_intervals equal intervals (0 is the weakest);
-- from each, the $per_interval tokens of smallest hash(token_id, $seed) are kept ($seed 0). The live
-- queries.interval_samples (any interval count, any seed) draws by the same rule.

-- @table
CREATE TABLE IF NOT EXISTS summary_intervals (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    interval      INTEGER NOT NULL,     -- 0 = weakest
    rank          INTEGER NOT NULL,     -- the token's rank by alpha in (factor, layer)
    alpha         FLOAT NOT NULL,
    token_id      BIGINT NOT NULL,
    sentence_idx  INTEGER NOT NULL,
    word          VARCHAR NOT NULL,
    ctx_start     INTEGER NOT NULL,     -- context span in sentences.text
    ctx_end       INTEGER NOT NULL,
    word_start    INTEGER NOT NULL,
    word_end      INTEGER NOT NULL
);

-- @merge: from the codes themselves (every shard's, merged or attached), not partials:
-- an interval's bounds need the global maximum first.
INSERT INTO summary_intervals
WITH ranked AS (
    SELECT factor, layer, alpha, token_id,
           row_number() OVER (PARTITION BY factor, layer ORDER BY alpha DESC, token_id) AS rank,
           max(alpha) OVER (PARTITION BY factor, layer) AS top
    FROM codes
    WHERE dictionary_id = $dictionary_id
),
picked AS (
    SELECT factor, layer, alpha, token_id, rank,
           least(CAST(floor(alpha / top * $n_intervals) AS INTEGER), $n_intervals - 1) AS interval
    FROM ranked
    QUALIFY row_number() OVER (
        PARTITION BY factor, layer, interval ORDER BY hash(token_id, $seed), token_id
    ) <= $per_interval
)
SELECT $dictionary_id, p.factor, p.layer, p.interval, p.rank, p.alpha, p.token_id,
       t.sentence_idx, t.word, sp.ctx_start, sp.ctx_end, t.word_start, t.word_end
FROM picked p
JOIN tokens t USING (token_id)
JOIN context_spans($context, NULL) sp
  ON sp.sentence_idx = t.sentence_idx AND sp.wi = coalesce(t.word_index, t.position)
ORDER BY p.factor, p.layer, p.interval DESC, p.rank;

-- @view
CREATE OR REPLACE VIEW factor_intervals_all AS
SELECT i.dictionary_id,
       i.factor,
       i.layer,
       i.interval,
       i.rank,
       i.alpha,
       i.token_id,
       i.sentence_idx,
       i.word,
       substr(s.text, i.ctx_start + 1, i.ctx_end - i.ctx_start) AS context,
       i.word_start - i.ctx_start AS highlight_start,
       i.word_end - i.ctx_start AS highlight_end
FROM summary_intervals i
JOIN sentences s USING (sentence_idx);

CREATE OR REPLACE VIEW factor_intervals AS
SELECT * FROM factor_intervals_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
