-- 002_summaries: tables the app writes, and the summaries behind the public views.
--
-- The summary_* tables are derived data: warehouse/summaries.py rebuilds every one of
-- them from codes, tokens, sentences and dictionary_atoms (refresh_summaries, called
-- when encode finishes). The public views in warehouse/views/ read them.

-- Written by the app (`factorscope serve`), carried across publishes (see publish.py).
CREATE TABLE IF NOT EXISTS user_labels (
    factor     INTEGER PRIMARY KEY,
    label      VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS lime_cache (
    key          VARCHAR PRIMARY KEY,   -- caller-built: dictionary, text, target, samples
    factor       INTEGER NOT NULL,
    layer        SMALLINT NOT NULL,
    sentence_idx INTEGER,               -- NULL for free text typed by the user
    word_index   INTEGER NOT NULL,
    n_samples    INTEGER NOT NULL,
    result       JSON NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- What the last refresh used (top_k, importance_k, level bounds, dictionary_id...).
CREATE TABLE IF NOT EXISTS summary_meta (
    key   VARCHAR PRIMARY KEY,
    value JSON NOT NULL
);

-- The top_k tokens by alpha of every (factor, layer), ties broken by token_id; the
-- context span (about 10 words either side) is kept as offsets into sentences.text.
CREATE TABLE IF NOT EXISTS summary_top_contexts (
    factor       INTEGER NOT NULL,
    layer        SMALLINT NOT NULL,
    rank         INTEGER NOT NULL,      -- 1 = largest alpha
    alpha        FLOAT NOT NULL,
    token_id     BIGINT NOT NULL,
    sentence_idx INTEGER NOT NULL,
    word         VARCHAR NOT NULL,
    ctx_start    INTEGER NOT NULL,      -- context span in sentences.text
    ctx_end      INTEGER NOT NULL,
    word_start   INTEGER NOT NULL,      -- the token's word in sentences.text
    word_end     INTEGER NOT NULL
);

-- IS[factor, layer]: sum of the importance_k largest alphas / importance_k (zeros count).
CREATE TABLE IF NOT EXISTS summary_importance (
    factor     INTEGER NOT NULL,
    layer      SMALLINT NOT NULL,
    importance DOUBLE NOT NULL,
    n_active   BIGINT NOT NULL,         -- non-zero codes of this factor at this layer
    max_alpha  FLOAT NOT NULL
);

CREATE TABLE IF NOT EXISTS summary_levels (
    factor     INTEGER PRIMARY KEY,
    peak_layer SMALLINT NOT NULL,
    level      VARCHAR NOT NULL         -- 'low' | 'mid' | 'high'
);

-- The top factors of every (lower-cased word, layer) by mean alpha over the word's
-- occurrences (zeros count); hits = occurrences where the factor is active.
CREATE TABLE IF NOT EXISTS summary_word_factors (
    word          VARCHAR NOT NULL,
    layer         SMALLINT NOT NULL,
    factor        INTEGER NOT NULL,
    mean_alpha    DOUBLE NOT NULL,
    hits          BIGINT NOT NULL,
    n_occurrences BIGINT NOT NULL
);

-- Log-spaced alpha histogram: bin b holds 2^(b/4) <= alpha < 2^((b+1)/4).
CREATE TABLE IF NOT EXISTS summary_histogram (
    factor INTEGER NOT NULL,
    layer  SMALLINT NOT NULL,
    bin    INTEGER NOT NULL,
    count  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS summary_neighbors (
    factor       INTEGER NOT NULL,
    neighbor     INTEGER NOT NULL,
    cosine       DOUBLE NOT NULL,       -- of the two unit-norm atoms
    coactivation DOUBLE NOT NULL        -- Jaccard of their top-context token sets
);

CREATE TABLE IF NOT EXISTS auto_labels (
    factor INTEGER PRIMARY KEY,
    label  VARCHAR NOT NULL
);

INSERT INTO schema_version (version, name) VALUES (2, 'summaries') ON CONFLICT DO NOTHING;
