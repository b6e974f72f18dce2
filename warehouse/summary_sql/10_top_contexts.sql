-- summary_top_contexts: the $top_k largest alphas of each (factor, layer), ties broken
-- by the smaller token_id, each with the context span of its token.

-- @table
-- The top_k tokens by alpha of every (factor, layer), ties broken by token_id; the
-- context span (about 10 words either side) is kept as offsets into sentences.text.
CREATE TABLE IF NOT EXISTS summary_top_contexts (
    dictionary_id INTEGER NOT NULL,      -- whose codes these summarise
    factor       INTEGER NOT NULL,
    layer        SMALLINT NOT NULL,
    rank         INTEGER NOT NULL,      -- 1 = largest alpha
    alpha        FLOAT NOT NULL,
    token_id     BIGINT NOT NULL,
    sentence_idx INTEGER NOT NULL,
    word         VARCHAR NOT NULL,
    ctx_start    INTEGER NOT NULL,      -- context span in sentences.text
    ctx_end      INTEGER NOT NULL,
    word_start   INTEGER NOT NULL,      -- the token's word in sentences.text
    word_end     INTEGER NOT NULL
);

-- @partial
-- partial (one shard's codes): its own top $partial_k rows (partial_k >= top_k), so
-- every global top-k row is in its shard's partial and the merge is exact.
CREATE OR REPLACE TEMP TABLE _p_top_contexts AS
SELECT factor, layer, token_id, alpha
FROM codes
WHERE dictionary_id = $dictionary_id
QUALIFY row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id)
        <= $partial_k
ORDER BY factor, layer, alpha DESC, token_id;

-- @merge
-- merge (the partials of every shard in _p_top_contexts)
INSERT INTO summary_top_contexts
WITH ranked AS (
    SELECT layer, factor, token_id, alpha,
           row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id) AS rank
    FROM _p_top_contexts
    QUALIFY rank <= $top_k
)
SELECT $dictionary_id, r.factor, r.layer, r.rank, r.alpha, r.token_id, t.sentence_idx, t.word,
       sp.ctx_start, sp.ctx_end, t.word_start, t.word_end
FROM ranked r
JOIN tokens t USING (token_id)
JOIN context_spans($context, NULL) sp
  ON sp.sentence_idx = t.sentence_idx AND sp.wi = coalesce(t.word_index, t.position)
ORDER BY r.factor, r.layer, r.rank;

-- @view
CREATE OR REPLACE VIEW factor_top_contexts_all AS
SELECT t.dictionary_id,
       t.factor,
       t.layer,
       t.rank,
       t.alpha,
       t.token_id,
       t.sentence_idx,
       t.word,
       substr(s.text, t.ctx_start + 1, t.ctx_end - t.ctx_start) AS context,
       t.word_start - t.ctx_start AS highlight_start,
       t.word_end - t.ctx_start AS highlight_end
FROM summary_top_contexts t
JOIN sentences s USING (sentence_idx);

CREATE OR REPLACE VIEW factor_top_contexts AS
SELECT * FROM factor_top_contexts_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
