-- 001_core: the tables every stage writes.
--
-- One database file holds one ingest run (one model over one corpus), any number of
-- dictionaries, and the codes of the active dictionary. Layer 0 is the embedding
-- output; layers 1..L are the transformer blocks' outputs.

CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS runs (
    run_id              INTEGER PRIMARY KEY,
    model               VARCHAR NOT NULL,   -- the name or path the user gave
    model_path          VARCHAR,            -- where from_pretrained read it
    revision            VARCHAR,            -- commit hash when known
    corpus              VARCHAR NOT NULL,   -- built-in name or path
    config              JSON NOT NULL,      -- full ingest config (IngestConfig.to_dict)
    config_hash         VARCHAR NOT NULL,   -- what decides "same run, resume"
    n_layers            INTEGER NOT NULL,   -- hidden-state layers incl. embeddings (L + 1)
    hidden_size         INTEGER NOT NULL,
    n_sentences         INTEGER NOT NULL,
    n_tokens            BIGINT NOT NULL,    -- stored (context) tokens
    n_chunks            INTEGER NOT NULL,
    sample_size         BIGINT NOT NULL,    -- token x layer vectors kept in hidden_states
    status              VARCHAR NOT NULL,   -- 'ingesting' | 'ingested'
    started_at          TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at         TIMESTAMP,
    ingest_seconds      DOUBLE,
    factorscope_version VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS sentences (
    sentence_idx INTEGER PRIMARY KEY,   -- order within the run; chunk = sentence_idx // chunk size
    sentence_id  VARCHAR NOT NULL,      -- stable: hash of source and text
    source       VARCHAR NOT NULL,
    text         VARCHAR NOT NULL,
    n_tokens     INTEGER NOT NULL       -- stored tokens of this sentence
);

CREATE TABLE IF NOT EXISTS tokens (
    token_id     BIGINT PRIMARY KEY,    -- sentence_idx * 1024 + position
    sentence_idx INTEGER NOT NULL,
    position     SMALLINT NOT NULL,     -- index in the model input (0 is [CLS] for BERT)
    piece        VARCHAR NOT NULL,      -- the word piece as the tokenizer spells it
    vocab_id     INTEGER NOT NULL,
    word         VARCHAR NOT NULL,      -- the whole word the piece belongs to
    word_index   INTEGER,               -- index of that word in the sentence
    char_start   INTEGER NOT NULL,      -- piece offsets in sentences.text
    char_end     INTEGER NOT NULL,
    word_start   INTEGER NOT NULL,      -- word offsets in sentences.text
    word_end     INTEGER NOT NULL
);

-- A seeded sample of token x layer vectors: what `learn` fits the dictionary on.
CREATE TABLE IF NOT EXISTS hidden_states (
    layer    SMALLINT NOT NULL,
    token_id BIGINT NOT NULL,
    vector   FLOAT[] NOT NULL
);

-- One row per committed chunk: what makes ingest resumable.
CREATE TABLE IF NOT EXISTS ingest_chunks (
    chunk       INTEGER PRIMARY KEY,
    n_sentences INTEGER NOT NULL,
    n_tokens    BIGINT NOT NULL,
    n_sampled   BIGINT NOT NULL,
    seconds     DOUBLE NOT NULL,
    finished_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS dictionaries (
    dictionary_id INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL,
    n_factors     INTEGER NOT NULL,
    hidden_size   INTEGER NOT NULL,
    lambda1       DOUBLE NOT NULL,
    preprocessing JSON NOT NULL,        -- applied identically at fit, encode and live analysis
    seed          INTEGER,
    fit_seconds   DOUBLE,
    source        VARCHAR NOT NULL,     -- 'trainDL' or 'npy:<path>'
    params        JSON NOT NULL,        -- estimator get_params()
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    status        VARCHAR NOT NULL      -- 'learned' | 'encoding' | 'encoded'
);

CREATE TABLE IF NOT EXISTS dictionary_atoms (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    vector        FLOAT[] NOT NULL,     -- unit-norm column of Phi
    PRIMARY KEY (dictionary_id, factor)
);

-- Non-zero codes of the active (last encoded) dictionary, for every stored token at
-- every layer. After encode finishes the table is rewritten sorted by
-- (layer, factor, alpha DESC) so DuckDB's zone maps make one (factor, layer) cheap.
CREATE TABLE IF NOT EXISTS codes (
    layer    SMALLINT NOT NULL,
    factor   INTEGER NOT NULL,
    token_id BIGINT NOT NULL,
    alpha    FLOAT NOT NULL
);

CREATE TABLE IF NOT EXISTS encode_chunks (
    dictionary_id INTEGER NOT NULL,
    chunk         INTEGER NOT NULL,
    n_codes       BIGINT NOT NULL,
    seconds       DOUBLE NOT NULL,
    finished_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, chunk)
);

-- Per-chunk, per-layer sums from which layer_quality is derived exactly.
CREATE TABLE IF NOT EXISTS encode_chunk_stats (
    dictionary_id INTEGER NOT NULL,
    chunk         INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    n_vectors     BIGINT NOT NULL,
    sq_residual   DOUBLE NOT NULL,      -- sum ||x - Phi a||^2 (preprocessed space)
    sq_norm       DOUBLE NOT NULL,      -- sum ||x||^2, with sum_x gives the centred total
    sum_x         DOUBLE[] NOT NULL,    -- per-dimension sums, for the centred total
    sum_l0        BIGINT NOT NULL,
    n_zero_codes  BIGINT NOT NULL,
    PRIMARY KEY (dictionary_id, chunk, layer)
);

CREATE TABLE IF NOT EXISTS layer_quality (
    dictionary_id   INTEGER NOT NULL,
    layer           SMALLINT NOT NULL,
    n_vectors       BIGINT NOT NULL,
    fvu             DOUBLE NOT NULL,    -- fraction of variance unexplained
    mean_l0         DOUBLE NOT NULL,
    zero_code_share DOUBLE NOT NULL,
    dead_factors    INTEGER NOT NULL,   -- never active at this layer
    lambda1         DOUBLE NOT NULL,
    PRIMARY KEY (dictionary_id, layer)
);

INSERT INTO schema_version (version, name) VALUES (1, 'core') ON CONFLICT DO NOTHING;
