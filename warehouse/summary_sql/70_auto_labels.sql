-- auto_labels (from the merged top contexts and levels; no partial): the three most
-- frequent words of the factor's top contexts at its peak layer, joined by " / ".
-- The public label views put a factor's explanation (schema/007_evidence.sql) first.

-- @table
CREATE TABLE IF NOT EXISTS auto_labels (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    label         VARCHAR NOT NULL,
    PRIMARY KEY (dictionary_id, factor)
);

-- @merge
INSERT INTO auto_labels
WITH w AS (
    SELECT t.factor, lower(t.word) AS word, count(*) AS n, min(t.rank) AS first_rank
    FROM summary_top_contexts t
    JOIN summary_levels l
      ON l.dictionary_id = t.dictionary_id AND l.factor = t.factor AND l.peak_layer = t.layer
    WHERE t.dictionary_id = $dictionary_id
    GROUP BY ALL
),
best AS (
    SELECT *, row_number() OVER (PARTITION BY factor ORDER BY n DESC, first_rank) AS k
    FROM w
    QUALIFY k <= 3
)
SELECT $dictionary_id, factor, string_agg(word, ' / ' ORDER BY k) AS label
FROM best
GROUP BY factor
ORDER BY factor;

-- @view
-- The automatic label is the factor's explanation at its peak layer when `factorscope
-- explain` found a rule there (read now: explain runs after the refresh that fills
-- auto_labels), else its top words above. A user's label is a row of its own; readers
-- prefer it.
CREATE OR REPLACE VIEW factor_labels_all AS
WITH explained AS (
    SELECT l.dictionary_id, l.factor, e.text
    FROM summary_levels l
    JOIN explanations e
      ON e.dictionary_id = l.dictionary_id AND e.factor = l.factor AND e.layer = l.peak_layer
    WHERE e.explained
)
SELECT dictionary_id, factor, label, 'user' AS source FROM user_labels
UNION ALL
SELECT coalesce(a.dictionary_id, x.dictionary_id) AS dictionary_id,
       coalesce(a.factor, x.factor) AS factor,
       coalesce(x.text, a.label) AS label,
       'auto' AS source
FROM auto_labels a
FULL JOIN explained x ON x.dictionary_id = a.dictionary_id AND x.factor = a.factor;

CREATE OR REPLACE VIEW factor_labels AS
SELECT * FROM factor_labels_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
