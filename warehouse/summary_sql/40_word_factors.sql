-- summary_word_factors: for each lower-cased word and layer, mean_alpha = (sum of the
-- factor's alpha over the word's tokens) / (number of the word's tokens); the
-- $word_top best factors of each (word, layer).

-- @table
-- The top factors of every (lower-cased word, layer) by mean alpha over the word's
-- occurrences (zeros count); hits = occurrences where the factor is active.
CREATE TABLE IF NOT EXISTS summary_word_factors (
    dictionary_id INTEGER NOT NULL,      -- whose codes these summarise
    word          VARCHAR NOT NULL,
    layer         SMALLINT NOT NULL,
    factor        INTEGER NOT NULL,
    mean_alpha    DOUBLE NOT NULL,
    hits          BIGINT NOT NULL,
    n_occurrences BIGINT NOT NULL
);

-- @partial
-- partial: per (word, layer, factor) sums and hit counts of one shard's codes.
CREATE OR REPLACE TEMP TABLE _p_word_factors AS
SELECT lower(t.word) AS word, c.layer, c.factor, sum(c.alpha) AS s, count(*) AS hits
FROM codes c JOIN tokens t USING (token_id)
WHERE c.dictionary_id = $dictionary_id
GROUP BY ALL
ORDER BY word, layer, factor;

-- @merge
-- merge
INSERT INTO summary_word_factors
WITH occ AS (
    SELECT lower(word) AS word, count(*) AS n FROM tokens GROUP BY 1
),
agg AS (
    SELECT word, layer, factor, sum(s) AS s, sum(hits) AS hits FROM _p_word_factors GROUP BY ALL
)
SELECT $dictionary_id, a.word, a.layer, a.factor, a.s / o.n AS mean_alpha, a.hits, o.n AS n_occurrences
FROM agg a JOIN occ o USING (word)
QUALIFY row_number() OVER (
    PARTITION BY a.word, a.layer ORDER BY a.s / o.n DESC, a.factor) <= $word_top
ORDER BY a.word, a.layer, mean_alpha DESC, a.factor;

-- @view
CREATE OR REPLACE VIEW word_factors_all AS
SELECT dictionary_id, word, layer, factor, mean_alpha, hits
FROM summary_word_factors;

CREATE OR REPLACE VIEW word_factors AS
SELECT * FROM word_factors_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
