-- summary_word_factors: for each lower-cased word and layer, mean_alpha = (sum of the
-- factor's alpha over the word's tokens) / (number of the word's tokens); the
-- $word_top best factors of each (word, layer).

-- partial: per (word, layer, factor) sums and hit counts of one shard's codes.
CREATE OR REPLACE TEMP TABLE _p_words AS
SELECT lower(t.word) AS word, c.layer, c.factor, sum(c.alpha) AS s, count(*) AS hits
FROM codes c JOIN tokens t USING (token_id)
GROUP BY ALL
ORDER BY word, layer, factor;

-- merge
INSERT INTO summary_word_factors
WITH occ AS (
    SELECT lower(word) AS word, count(*) AS n FROM tokens GROUP BY 1
),
agg AS (
    SELECT word, layer, factor, sum(s) AS s, sum(hits) AS hits FROM _p_words GROUP BY ALL
)
SELECT a.word, a.layer, a.factor, a.s / o.n AS mean_alpha, a.hits, o.n AS n_occurrences
FROM agg a JOIN occ o USING (word)
QUALIFY row_number() OVER (
    PARTITION BY a.word, a.layer ORDER BY a.s / o.n DESC, a.factor) <= $word_top
ORDER BY a.word, a.layer, mean_alpha DESC, a.factor;
