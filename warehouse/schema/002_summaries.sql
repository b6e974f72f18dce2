-- 002_summaries: tables the app writes, and what the last summary refresh used.
--
-- The summary tables themselves (summary_*, auto_labels) are derived data, defined with
-- their partial, merge and public view in warehouse/summary_sql/NN_<name>.sql and created
-- from there when a database is migrated (warehouse/summary_files.py). Files migrated
-- before that move already hold the same tables.

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

INSERT INTO schema_version (version, name) VALUES (2, 'summaries') ON CONFLICT DO NOTHING;
