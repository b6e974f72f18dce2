-- summary_top_contexts: the $top_k largest alphas of each (factor, layer), ties broken
-- by the smaller token_id, each with the context span of its token.

-- partial (one shard's codes): its own top $partial_k rows (partial_k >= top_k), so
-- every global top-k row is in its shard's partial and the merge is exact.
CREATE OR REPLACE TEMP TABLE _p_top AS
SELECT factor, layer, token_id, alpha
FROM codes
QUALIFY row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id)
        <= $partial_k
ORDER BY factor, layer, alpha DESC, token_id;

-- merge (the partials of every shard in _p_top)
INSERT INTO summary_top_contexts
WITH ranked AS (
    SELECT layer, factor, token_id, alpha,
           row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id) AS rank
    FROM _p_top
    QUALIFY rank <= $top_k
)
SELECT r.factor, r.layer, r.rank, r.alpha, r.token_id, t.sentence_idx, t.word,
       sp.ctx_start, sp.ctx_end, t.word_start, t.word_end
FROM ranked r
JOIN tokens t USING (token_id)
JOIN context_spans($context, NULL) sp
  ON sp.sentence_idx = t.sentence_idx AND sp.wi = coalesce(t.word_index, t.position)
ORDER BY r.factor, r.layer, r.rank;
