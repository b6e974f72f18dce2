-- summary_histogram: log-spaced bins, bin b holds 2^(b/$per_octave) <= alpha < 2^((b+1)/$per_octave).

-- @table
-- Log-spaced alpha histogram: bin b holds 2^(b/4) <= alpha < 2^((b+1)/4).
CREATE TABLE IF NOT EXISTS summary_histogram (
    dictionary_id INTEGER NOT NULL,      -- whose codes these summarise
    factor INTEGER NOT NULL,
    layer  SMALLINT NOT NULL,
    bin    INTEGER NOT NULL,
    count  BIGINT NOT NULL
);

-- @partial
-- partial
CREATE OR REPLACE TEMP TABLE _p_histogram AS
SELECT factor, layer, CAST(floor(log2(alpha) * $per_octave) AS INTEGER) AS bin, count(*) AS count
FROM codes
WHERE alpha > 0 AND dictionary_id = $dictionary_id
GROUP BY ALL
ORDER BY factor, layer, bin;

-- @merge
-- merge: counts add up
INSERT INTO summary_histogram
SELECT $dictionary_id, factor, layer, bin, sum(count) FROM _p_histogram GROUP BY ALL ORDER BY factor, layer, bin;

-- @view
CREATE OR REPLACE VIEW factor_histogram_all AS
SELECT dictionary_id,
       factor,
       layer,
       bin,
       count,
       pow(2.0, bin / 4.0) AS bin_low,
       pow(2.0, (bin + 1) / 4.0) AS bin_high
FROM summary_histogram;

CREATE OR REPLACE VIEW factor_histogram AS
SELECT * FROM factor_histogram_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
