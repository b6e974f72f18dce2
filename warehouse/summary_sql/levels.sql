-- summary_levels (from the merged summary_importance; no partial): the peak layer is
-- the layer of largest IS (ties: the lowest layer); low if peak < b1 * n_layers, mid
-- if peak < b2 * n_layers, else high. Factors never active are left out.
INSERT INTO summary_levels
SELECT factor, layer AS peak_layer,
       CASE WHEN layer < $b1 * $n_layers THEN 'low'
            WHEN layer < $b2 * $n_layers THEN 'mid'
            ELSE 'high' END AS level
FROM summary_importance
WHERE importance > 0
QUALIFY row_number() OVER (PARTITION BY factor ORDER BY importance DESC, layer) = 1
ORDER BY factor;
