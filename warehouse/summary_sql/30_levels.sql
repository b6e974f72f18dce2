-- summary_levels (from the merged summary_importance; no partial): the peak layer is
-- the layer of largest IS (ties: the lowest layer); low if peak < b1 * n_layers, mid
-- if peak < b2 * n_layers, else high. Factors never active are left out.

-- @table
CREATE TABLE IF NOT EXISTS summary_levels (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    peak_layer    SMALLINT NOT NULL,
    level         VARCHAR NOT NULL,     -- 'low' | 'mid' | 'high'
    PRIMARY KEY (dictionary_id, factor)
);

-- @merge
INSERT INTO summary_levels
SELECT $dictionary_id, factor, layer AS peak_layer,
       CASE WHEN layer < $b1 * $n_layers THEN 'low'
            WHEN layer < $b2 * $n_layers THEN 'mid'
            ELSE 'high' END AS level
FROM summary_importance
WHERE importance > 0 AND dictionary_id = $dictionary_id
QUALIFY row_number() OVER (PARTITION BY factor ORDER BY importance DESC, layer) = 1
ORDER BY factor;

-- @view
CREATE OR REPLACE VIEW factor_levels_all AS
SELECT dictionary_id, factor, peak_layer, level
FROM summary_levels;

CREATE OR REPLACE VIEW factor_levels AS
SELECT * FROM factor_levels_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
