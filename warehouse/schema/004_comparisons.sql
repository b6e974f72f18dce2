-- 004_comparisons: what `factorscope compare A B` finds between two dictionaries of the run.
--
-- One comparison per ordered pair (dictionary_a, dictionary_b); comparing the same pair
-- again replaces its rows under the same comparison_id. Written by stages/compare.py
-- (math in sparse/compare.py); read through warehouse/comparisons.py.

CREATE TABLE IF NOT EXISTS comparisons (
    comparison_id      INTEGER PRIMARY KEY,
    dictionary_a       INTEGER NOT NULL,
    dictionary_b       INTEGER NOT NULL,
    n_factors_a        INTEGER NOT NULL,
    n_factors_b        INTEGER NOT NULL,
    n_matched          INTEGER NOT NULL,   -- min(n_factors_a, n_factors_b): one-to-one pairs
    mean_cosine        DOUBLE NOT NULL,    -- mean atom cosine of the pairs matched by cosine
    share_cosine_90    DOUBLE NOT NULL,    -- share of those pairs with cosine >= 0.9
    share_cosine_70    DOUBLE NOT NULL,    -- ... >= 0.7
    mean_coactivation  DOUBLE NOT NULL,    -- mean Jaccard of the same (cosine-matched) pairs
    coact_mean         DOUBLE NOT NULL,    -- mean Jaccard of the pairs matched by co-activation
    coact_share_50     DOUBLE NOT NULL,    -- share of those pairs with Jaccard >= 0.5
    same_match_share   DOUBLE NOT NULL,    -- share of pairs both matchings agree on
    n_vectors          BIGINT NOT NULL,    -- token x layer vectors coded by both (co-activation)
    split_side         VARCHAR NOT NULL,   -- 'a' | 'b': the (smaller) dictionary decomposed
    n_splits           INTEGER NOT NULL,
    peak_agreement     DOUBLE,             -- share of matched pairs with the same IS peak layer
    level_agreement    DOUBLE,             -- ... with the same level (NULL: not both encoded)
    settings           JSON NOT NULL,      -- CompareConfig and the split rule
    seconds            DOUBLE NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (dictionary_a, dictionary_b)
);

-- The one-to-one matchings (Hungarian): by atom cosine, and by co-activation.
CREATE TABLE IF NOT EXISTS comparison_matches (
    comparison_id INTEGER NOT NULL,
    method        VARCHAR NOT NULL,        -- 'cosine' | 'coactivation': what was maximised
    factor_a      INTEGER NOT NULL,
    factor_b      INTEGER NOT NULL,
    cosine        DOUBLE NOT NULL,         -- of the two unit-norm atoms
    coactivation  DOUBLE NOT NULL,         -- Jaccard of their activity over the vectors
    peak_layer_a  SMALLINT,                -- IS peak layers and levels (NULL unless the
    peak_layer_b  SMALLINT,                -- dictionary is encoded and the factor fires)
    level_a       VARCHAR,
    level_b       VARCHAR,
    PRIMARY KEY (comparison_id, method, factor_a)
);

-- Each factor's most similar atom on the other side (not one-to-one).
CREATE TABLE IF NOT EXISTS comparison_best (
    comparison_id INTEGER NOT NULL,
    side          VARCHAR NOT NULL,        -- 'a': factor of A, best of B; 'b': the other way
    factor        INTEGER NOT NULL,
    best          INTEGER NOT NULL,
    cosine        DOUBLE NOT NULL,
    PRIMARY KEY (comparison_id, side, factor)
);

-- Atoms of the smaller dictionary that are non-negative sums of the larger one's.
CREATE TABLE IF NOT EXISTS comparison_splits (
    comparison_id INTEGER NOT NULL,
    kind          VARCHAR NOT NULL,        -- 'split': a factor of A became parts of B; 'merge': parts of A became one of B
    factor        INTEGER NOT NULL,        -- of the smaller dictionary (split_side)
    parts         STRUCT(factor INTEGER, weight DOUBLE)[] NOT NULL,  -- largest weight first
    residual      DOUBLE NOT NULL,         -- ||atom - sum weight x part|| (atoms unit norm)
    PRIMARY KEY (comparison_id, factor)
);

INSERT INTO schema_version (version, name) VALUES (4, 'comparisons') ON CONFLICT DO NOTHING;
