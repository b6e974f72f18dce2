-- 007_evidence: control dictionaries, token tags, explanations and their held-out scores.
--
-- A control is a dictionary like any other (atoms, codes, summaries), made by
-- `factorscope learn --control KIND` beside a parent: random atoms of the parent's size
-- and preprocessing, with lambda bisected until its mean L0 on the stored sample matches
-- the parent's. Every quality number about a dictionary is shown beside its controls.
ALTER TABLE dictionaries ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'learned';  -- 'learned' | 'imported' | 'control'
ALTER TABLE dictionaries ADD COLUMN IF NOT EXISTS parent_id INTEGER;               -- a control's parent
UPDATE dictionaries SET kind = 'imported' WHERE source LIKE 'npy:%';
UPDATE dictionaries SET kind = 'learned' WHERE kind IS NULL;

-- The default dictionary of the public views: the session's choice, else the last
-- encoded dictionary that is not a control (a control is never shown unasked), else the
-- last encoded one, else the newest one.
CREATE OR REPLACE VIEW active_dictionary AS
SELECT coalesce(
    TRY_CAST(getvariable('fs_dictionary') AS INTEGER),
    (SELECT d.dictionary_id FROM dictionaries d
     WHERE d.status = 'encoded'
       AND EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id)
     ORDER BY (coalesce(d.kind, 'learned') = 'control'),
              d.encoded_at DESC NULLS LAST, d.dictionary_id DESC
     LIMIT 1),
    (SELECT max(dictionary_id) FROM dictionaries)
) AS dictionary_id;

-- Part of speech, lemma and WordNet class of every stored token (its whole word), by the
-- tagger named in token_tags_meta. Written by `factorscope explain` once per run.
CREATE TABLE IF NOT EXISTS token_tags (
    token_id BIGINT PRIMARY KEY,
    tag      VARCHAR NOT NULL,   -- Penn Treebank tag of the word (VBD: past-tense verb)
    pos      VARCHAR NOT NULL,   -- universal part of speech (NOUN, VERB, ...)
    lemma    VARCHAR NOT NULL,   -- lower case
    lexname  VARCHAR             -- WordNet lexicographer class of the lemma's first sense
);

CREATE TABLE IF NOT EXISTS token_tags_meta (
    key   VARCHAR PRIMARY KEY,   -- 'tagger', 'tagger_version', 'model', 'model_version', 'wordnet'
    value VARCHAR NOT NULL
);

-- The best short rule over token features for each factor at each layer where it has
-- enough active tokens on the training sentences; `explained` is false (and `text` says
-- why) where no rule was found or the factor is too rare.
CREATE TABLE IF NOT EXISTS explanations (
    dictionary_id     INTEGER NOT NULL,
    layer             SMALLINT NOT NULL,
    factor            INTEGER NOT NULL,
    explained         BOOLEAN NOT NULL,
    text              VARCHAR NOT NULL,  -- "the word bank", "nouns after the"
    rule              JSON,              -- [{"feature": "word", "value": "bank"}, ...]
    rule_kind         VARCHAR,           -- feature of a one-term rule, or 'conjunction'
    n_terms           INTEGER NOT NULL,
    n_active_train    BIGINT NOT NULL,   -- active tokens on the training sentences
    train_detection   DOUBLE,            -- balanced accuracy of the rule on the training split
    PRIMARY KEY (dictionary_id, layer, factor)
);

-- The explanations scored on held-out sentences. Chance is 0.5 for detection and
-- `localisation_chance` for localisation.
CREATE TABLE IF NOT EXISTS explanation_scores (
    dictionary_id       INTEGER NOT NULL,
    layer               SMALLINT NOT NULL,
    factor              INTEGER NOT NULL,
    n_active            BIGINT NOT NULL,  -- active tokens on the held-out sentences
    n_inactive          BIGINT NOT NULL,
    detection           DOUBLE,           -- balanced accuracy, active tokens weighted equally per activation quintile
    detection_low       DOUBLE,           -- 95% interval (normal approximation)
    detection_high      DOUBLE,
    detection_top       DOUBLE,           -- the same for the strongest quintile alone
    auroc               DOUBLE,           -- ranked by the number of the rule's terms a token meets
    precision           DOUBLE,           -- of the tokens the rule picks, the share that are active
    n_sentences         BIGINT NOT NULL,  -- held-out sentences where the factor is active
    localisation        DOUBLE,           -- does the rule pick the sentence's most active token
    localisation_chance DOUBLE,           -- the same for a token picked at random
    PRIMARY KEY (dictionary_id, layer, factor)
);

-- One row per (dictionary, layer) finished: what makes `explain` resumable.
CREATE TABLE IF NOT EXISTS explain_layers (
    dictionary_id INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    settings      JSON NOT NULL,         -- ExplainConfig.to_dict()
    seconds       DOUBLE NOT NULL,
    finished_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, layer)
);

INSERT INTO schema_version (version, name) VALUES (7, 'evidence') ON CONFLICT DO NOTHING;
