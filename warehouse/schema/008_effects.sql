-- 008_effects: what a factor does to the model, measured by removing it.
--
-- For a factor c at layer l, its contribution alpha * phi_c (mapped back through the
-- dictionary's preprocessing into the model's space: alpha * phi_c / scale[l]) is
-- subtracted from the hidden state of layer l at every token where c is active in its
-- top-context sentences, and the model runs its remaining layers. The control subtracts
-- a random direction of exactly the same norm at the same tokens. Written by
-- `factorscope effects` (every factor at its peak layer; source 'stage') and by the app's
-- factor page (any layer, on demand; source 'on-demand'), into the same tables.

-- One row per measured (dictionary, factor, layer). The `control_*` columns are the same
-- measures for the random direction.
CREATE TABLE IF NOT EXISTS factor_effects (
    dictionary_id       INTEGER NOT NULL,
    factor              INTEGER NOT NULL,
    layer               SMALLINT NOT NULL,   -- the layer the factor was removed at
    source              VARCHAR NOT NULL,    -- 'stage' | 'on-demand'
    output_kind         VARCHAR NOT NULL,    -- 'sentence-embedding' | 'masked-lm' | 'causal-lm'
    n_sentences         INTEGER NOT NULL,    -- top-context sentences used
    n_tokens            INTEGER NOT NULL,    -- tokens edited (where the factor is active)
    mean_alpha          DOUBLE,              -- mean code of the edited tokens
    edit_norm           DOUBLE,              -- mean ||alpha phi / scale||, model space
    edit_rel            DOUBLE,              -- the same over the token's norm at `layer`
    state_change        DOUBLE,              -- mean ||x'_L - x_L|| / ||x_L||, same tokens, last layer
    state_cosine        DOUBLE,              -- mean cos(x'_L, x_L)
    embedding_shift     DOUBLE,              -- mean over sentences of 1 - cos(pooled', pooled)
    embedding_change    DOUBLE,              -- mean ||pooled' - pooled|| / ||pooled||
    output_kl           DOUBLE,              -- head only: mean KL(clean || ablated), nats, edited tokens
    top_logprob_change  DOUBLE,              -- head only: mean change of log p(the clean top prediction)
    control_state_change       DOUBLE,
    control_state_cosine       DOUBLE,
    control_embedding_shift    DOUBLE,
    control_embedding_change   DOUBLE,
    control_output_kl          DOUBLE,
    control_top_logprob_change DOUBLE,
    settings            JSON NOT NULL,       -- EffectSettings (contexts, output tokens kept, seed)
    seconds             DOUBLE NOT NULL,
    computed_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, factor, layer)
);

-- Models with a language-model head: the output tokens the factor pushes up ('promoted':
-- their logit falls when the factor is removed) and down ('suppressed'), at the
-- edited tokens. kind 'ablation': through the remaining layers and the head; 'direct':
-- the head alone on the last layer's states with the atom removed there.
CREATE TABLE IF NOT EXISTS factor_output_tokens (
    dictionary_id INTEGER NOT NULL,
    factor        INTEGER NOT NULL,
    layer         SMALLINT NOT NULL,
    kind          VARCHAR NOT NULL,   -- 'ablation' | 'direct'
    direction     VARCHAR NOT NULL,   -- 'promoted' | 'suppressed'
    rank          INTEGER NOT NULL,   -- 1 = the largest effect
    token_id      INTEGER NOT NULL,   -- vocabulary id
    token         VARCHAR NOT NULL,   -- the vocabulary entry ('bank', '##ing', 'Ġleft')
    effect        DOUBLE NOT NULL,    -- mean logit(token | clean) - logit(token | ablated)
    PRIMARY KEY (dictionary_id, factor, layer, kind, direction, rank)
);

-- Every top-context sentence used, the one whose sentence embedding moves most first.
CREATE TABLE IF NOT EXISTS factor_effect_sentences (
    dictionary_id           INTEGER NOT NULL,
    factor                  INTEGER NOT NULL,
    layer                   SMALLINT NOT NULL,
    rank                    INTEGER NOT NULL,
    sentence_idx            INTEGER NOT NULL,
    n_tokens                INTEGER NOT NULL,  -- tokens edited in it
    embedding_shift         DOUBLE NOT NULL,   -- 1 - cos(pooled', pooled)
    control_embedding_shift DOUBLE NOT NULL,
    state_change            DOUBLE NOT NULL,   -- mean over its edited tokens, last layer
    PRIMARY KEY (dictionary_id, factor, layer, rank)
);

-- One row per chunk of factors `factorscope effects` finished: what makes it resumable.
CREATE TABLE IF NOT EXISTS effects_chunks (
    dictionary_id INTEGER NOT NULL,
    chunk         INTEGER NOT NULL,
    n_factors     INTEGER NOT NULL,
    settings      JSON NOT NULL,
    seconds       DOUBLE NOT NULL,
    finished_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, chunk)
);

INSERT INTO schema_version (version, name) VALUES (8, 'effects') ON CONFLICT DO NOTHING;
