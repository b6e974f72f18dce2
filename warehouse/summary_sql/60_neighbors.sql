-- summary_neighbors: for each factor, the $neighbors_n atoms of largest cosine and the
-- $neighbors_n factors of largest co-activation (Jaccard index of the token sets of their
-- top contexts over all layers). Filled in Python (summaries.write_neighbors: a sparse
-- matrix product, not SQL), so no partial and no merge here.

-- @table
CREATE TABLE IF NOT EXISTS summary_neighbors (
    dictionary_id INTEGER NOT NULL,      -- whose codes these summarise
    factor       INTEGER NOT NULL,
    neighbor     INTEGER NOT NULL,
    cosine       DOUBLE NOT NULL,       -- of the two unit-norm atoms
    coactivation DOUBLE NOT NULL        -- Jaccard of their top-context token sets
);

-- @view
CREATE OR REPLACE VIEW factor_neighbors_all AS
SELECT dictionary_id, factor, neighbor, cosine, coactivation
FROM summary_neighbors;

CREATE OR REPLACE VIEW factor_neighbors AS
SELECT * FROM factor_neighbors_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
