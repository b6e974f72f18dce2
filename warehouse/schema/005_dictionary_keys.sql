-- 005_dictionary_keys: several encoded dictionaries in one warehouse.
--
-- Codes, summaries (their tables come from summary_sql/*.sql, keyed there), the summary
-- meta and the user's labels are keyed by dictionary_id. A file migrated from version 2
-- keeps its codes and labels under the dictionary they belonged to: the one its summaries
-- were built from (summary_meta), else its newest encoded one, else its newest one.

ALTER TABLE dictionaries ADD COLUMN encoded_at TIMESTAMP;  -- last finished encode
UPDATE dictionaries SET encoded_at = created_at WHERE status = 'encoded';

CREATE TEMP TABLE _was_active AS
SELECT coalesce(
    (SELECT max(TRY_CAST(CAST(value AS VARCHAR) AS INTEGER)) FROM summary_meta
     WHERE key = 'dictionary_id'),
    (SELECT max(dictionary_id) FROM dictionaries WHERE status = 'encoded'),
    (SELECT max(dictionary_id) FROM dictionaries)
) AS dictionary_id;

-- Non-zero codes of every encoded dictionary, sorted by (dictionary_id, layer, factor,
-- alpha DESC): the leading dictionary_id is one run per dictionary, almost free compressed.
CREATE TABLE codes_keyed (
    dictionary_id INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    factor        INTEGER NOT NULL,
    token_id      BIGINT NOT NULL,
    alpha         FLOAT NOT NULL
);
INSERT INTO codes_keyed
SELECT (SELECT dictionary_id FROM _was_active), layer, factor, token_id, alpha
FROM codes
ORDER BY layer, factor, alpha DESC;
DROP TABLE codes;
ALTER TABLE codes_keyed RENAME TO codes;

-- A label belongs to a factor of one dictionary (a new dictionary renumbers factors).
CREATE TABLE user_labels_keyed (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    label         VARCHAR NOT NULL,
    updated_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, factor)
);
INSERT INTO user_labels_keyed
SELECT (SELECT dictionary_id FROM _was_active), factor, label, updated_at
FROM user_labels
WHERE (SELECT dictionary_id FROM _was_active) IS NOT NULL;
DROP TABLE user_labels;
ALTER TABLE user_labels_keyed RENAME TO user_labels;

-- LIME results: their key already names the dictionary; the column makes it queryable.
ALTER TABLE lime_cache ADD COLUMN dictionary_id INTEGER;
UPDATE lime_cache SET dictionary_id = (SELECT dictionary_id FROM _was_active);

-- What each dictionary's last refresh used.
CREATE TABLE summary_meta_keyed (
    dictionary_id INTEGER NOT NULL,
    key           VARCHAR NOT NULL,
    value         JSON NOT NULL,
    PRIMARY KEY (dictionary_id, key)
);
INSERT INTO summary_meta_keyed
SELECT (SELECT dictionary_id FROM _was_active), key, value
FROM summary_meta
WHERE (SELECT dictionary_id FROM _was_active) IS NOT NULL;
DROP TABLE summary_meta;
ALTER TABLE summary_meta_keyed RENAME TO summary_meta;

DROP TABLE _was_active;

-- The dictionary the public views show: the session's choice (the app sets the variable
-- `fs_dictionary` on its connection), else the last encoded one (summaries finished).
-- A view here, not in views/, because every summary's own view reads it.
CREATE OR REPLACE VIEW active_dictionary AS
SELECT coalesce(
    TRY_CAST(getvariable('fs_dictionary') AS INTEGER),
    (SELECT d.dictionary_id FROM dictionaries d
     WHERE d.status = 'encoded'
       AND EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id)
     ORDER BY d.encoded_at DESC NULLS LAST, d.dictionary_id DESC
     LIMIT 1),
    (SELECT max(dictionary_id) FROM dictionaries)
) AS dictionary_id;

INSERT INTO schema_version (version, name) VALUES (5, 'dictionary_keys') ON CONFLICT DO NOTHING;
