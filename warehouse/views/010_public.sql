-- The public views: what the app, `factorscope sql` and exports read.
-- Each view reads a summary_* table that warehouse/summaries.py refreshes after encode.

CREATE OR REPLACE VIEW factor_top_contexts AS
SELECT t.factor,
       t.layer,
       t.rank,
       t.alpha,
       t.token_id,
       t.sentence_idx,
       t.word,
       substr(s.text, t.ctx_start + 1, t.ctx_end - t.ctx_start) AS context,
       t.word_start - t.ctx_start AS highlight_start,
       t.word_end - t.ctx_start AS highlight_end
FROM summary_top_contexts t
JOIN sentences s USING (sentence_idx);

CREATE OR REPLACE VIEW factor_importance AS
SELECT factor, layer, importance
FROM summary_importance;

CREATE OR REPLACE VIEW factor_levels AS
SELECT factor, peak_layer, level
FROM summary_levels;

CREATE OR REPLACE VIEW word_factors AS
SELECT word, layer, factor, mean_alpha, hits
FROM summary_word_factors;

CREATE OR REPLACE VIEW factor_histogram AS
SELECT factor,
       layer,
       bin,
       count,
       pow(2.0, bin / 4.0) AS bin_low,
       pow(2.0, (bin + 1) / 4.0) AS bin_high
FROM summary_histogram;

CREATE OR REPLACE VIEW factor_neighbors AS
SELECT factor, neighbor, cosine, coactivation
FROM summary_neighbors;

CREATE OR REPLACE VIEW factor_labels AS
SELECT factor, label, 'user' AS source FROM user_labels
UNION ALL
SELECT factor, label, 'auto' AS source FROM auto_labels;
