-- summary_density: how often each factor fires at each layer, as the share of the
-- run's tokens whose code is non-zero.

-- @table
CREATE TABLE IF NOT EXISTS summary_density (
    factor   INTEGER NOT NULL,
    layer    SMALLINT NOT NULL,
    n_active BIGINT NOT NULL,
    density  DOUBLE NOT NULL            -- n_active / number of tokens
);

-- @partial: one shard's counts
CREATE OR REPLACE TEMP TABLE _p_density AS
SELECT factor, layer, count(*) AS n_active
FROM codes
GROUP BY ALL;

-- @merge: counts add up; the merged database holds every token
INSERT INTO summary_density
SELECT factor, layer, sum(n_active) AS n_active,
       sum(n_active) / (SELECT count(*) FROM tokens) AS density
FROM _p_density
GROUP BY ALL
ORDER BY factor, layer;

-- @view
CREATE OR REPLACE VIEW factor_density AS
SELECT factor, layer, n_active, density
FROM summary_density;
