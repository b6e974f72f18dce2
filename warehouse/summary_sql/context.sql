-- The context cut: for every word of the sentences in the list `sentences` (NULL: of
-- every sentence), the character span of the words `context` either side (by
-- tokens.word_index; a token without one is its own word).
-- The top contexts (top_contexts.sql) and the live queries (queries.py) both cut
-- through this macro, so a context reads the same wherever it comes from.
CREATE OR REPLACE TEMP MACRO context_spans(context, sentences) AS TABLE
WITH words AS (
    SELECT sentence_idx,
           coalesce(word_index, position) AS wi,
           min(word_start) AS ws,
           max(word_end) AS we
    FROM tokens
    WHERE sentences IS NULL OR list_contains(sentences, sentence_idx)
    GROUP BY ALL
)
SELECT sentence_idx, wi,
       min(ws) OVER win AS ctx_start,
       max(we) OVER win AS ctx_end
FROM words
WINDOW win AS (PARTITION BY sentence_idx ORDER BY wi
               RANGE BETWEEN context PRECEDING AND context FOLLOWING);
