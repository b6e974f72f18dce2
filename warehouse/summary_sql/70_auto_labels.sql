-- auto_labels (from the merged top contexts and levels; no partial): the three most
-- frequent words of the factor's top contexts at its peak layer, joined by " / ".

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
CREATE OR REPLACE VIEW factor_labels_all AS
SELECT dictionary_id, factor, label, 'user' AS source FROM user_labels
UNION ALL
SELECT dictionary_id, factor, label, 'auto' AS source FROM auto_labels;

CREATE OR REPLACE VIEW factor_labels AS
SELECT * FROM factor_labels_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
