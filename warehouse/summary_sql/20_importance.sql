-- summary_importance: IS[c, l] = (sum of the $importance_k largest alpha_c at layer l)
-- / $importance_k (missing ones count as zeros), n_active and max_alpha.

-- @table
-- IS[factor, layer]: sum of the importance_k largest alphas / importance_k (zeros count).
CREATE TABLE IF NOT EXISTS summary_importance (
    dictionary_id INTEGER NOT NULL,      -- whose codes these summarise
    factor     INTEGER NOT NULL,
    layer      SMALLINT NOT NULL,
    importance DOUBLE NOT NULL,
    n_active   BIGINT NOT NULL,         -- non-zero codes of this factor at this layer
    max_alpha  FLOAT NOT NULL
);

-- @partial
-- partial: each (factor, layer)'s own $importance_k largest alphas, descending.
CREATE OR REPLACE TEMP TABLE _p_importance AS
SELECT factor, layer,
       max(alpha, $importance_k) AS top_alphas,
       count(*) AS n_active,
       max(alpha) AS max_alpha
FROM codes
WHERE dictionary_id = $dictionary_id
GROUP BY factor, layer
ORDER BY factor, layer;

-- @merge
-- merge: the largest $importance_k of the partials' lists, summed in descending order
-- (so one partial or many give the same doubles); counts add up, maxima of maxima.
INSERT INTO summary_importance
SELECT $dictionary_id, factor, layer,
       list_sum(list_sort(flatten(list(top_alphas)), 'DESC')[1:$importance_k])
           / $importance_k AS importance,
       sum(n_active) AS n_active,
       max(max_alpha) AS max_alpha
FROM _p_importance
GROUP BY factor, layer
ORDER BY factor, layer;

-- @view
CREATE OR REPLACE VIEW factor_importance_all AS
SELECT dictionary_id, factor, layer, importance
FROM summary_importance;

CREATE OR REPLACE VIEW factor_importance AS
SELECT * FROM factor_importance_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
