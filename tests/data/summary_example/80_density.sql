-- summary_density: how often each factor fires at each layer, as the share of the
-- run's tokens whose code is non-zero.

-- @table
CREATE TABLE IF NOT EXISTS summary_density (
    dictionary_id INTEGER NOT NULL,     -- every summary is keyed by its dictionary
    factor        INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    n_active      BIGINT NOT NULL,
    density       DOUBLE NOT NULL       -- n_active / number of tokens
);

-- @partial: one shard's counts, of the dictionary being summarised
CREATE OR REPLACE TEMP TABLE _p_density AS
SELECT factor, layer, count(*) AS n_active
FROM codes
WHERE dictionary_id = $dictionary_id
GROUP BY ALL;

-- @merge: counts add up; the merged database holds every token
INSERT INTO summary_density
SELECT $dictionary_id, factor, layer, sum(n_active) AS n_active,
       sum(n_active) / (SELECT count(*) FROM tokens) AS density
FROM _p_density
GROUP BY ALL
ORDER BY factor, layer;

-- @view: every dictionary's rows, and the active dictionary's under the plain name
CREATE OR REPLACE VIEW factor_density_all AS
SELECT dictionary_id, factor, layer, n_active, density
FROM summary_density;

CREATE OR REPLACE VIEW factor_density AS
SELECT * FROM factor_density_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
