-- summary_histogram: log-spaced bins, bin b holds 2^(b/$per_octave) <= alpha < 2^((b+1)/$per_octave).

-- partial
CREATE OR REPLACE TEMP TABLE _p_histogram AS
SELECT factor, layer, CAST(floor(log2(alpha) * $per_octave) AS INTEGER) AS bin, count(*) AS count
FROM codes
WHERE alpha > 0
GROUP BY ALL
ORDER BY factor, layer, bin;

-- merge: counts add up
INSERT INTO summary_histogram
SELECT factor, layer, bin, sum(count) FROM _p_histogram GROUP BY ALL ORDER BY factor, layer, bin;
