-- The sense probe averaged over the probed words (`factorscope probe`, table sense_probe).
--
-- One row per (dictionary, layer, representation): the mean over words of the
-- leave-one-out 1-NN sense accuracy, of its chance level and (codes) of the share of
-- occurrences whose top factor is not the word's layer-0 factor, each with a 95%
-- confidence interval by the normal approximation over words: mean +- 1.96 * sd / sqrt(n),
-- sd the sample standard deviation over words (the interval is the mean itself for one word).
-- `sense_probe_summary_all` holds every probed dictionary; `sense_probe_summary` the active
-- one only (empty when the active dictionary has not been probed), like every public view.

CREATE OR REPLACE VIEW sense_probe_summary_all AS
WITH s AS (
    SELECT dictionary_id,
           layer,
           representation,
           count(*) AS n_lemmas,
           avg(accuracy) AS accuracy,
           coalesce(1.96 * stddev_samp(accuracy) / sqrt(count(*)), 0) AS accuracy_half,
           avg(chance) AS chance,
           coalesce(1.96 * stddev_samp(chance) / sqrt(count(*)), 0) AS chance_half,
           avg(off_word_share) AS off_word_share,
           coalesce(1.96 * stddev_samp(off_word_share) / sqrt(count(off_word_share)), 0)
               AS off_word_half,
           CAST(sum(n_occurrences) AS BIGINT) AS n_occurrences
    FROM sense_probe
    GROUP BY dictionary_id, layer, representation
)
SELECT dictionary_id,
       layer,
       representation,
       n_lemmas,
       n_occurrences,
       accuracy,
       accuracy - accuracy_half AS accuracy_lo,
       accuracy + accuracy_half AS accuracy_hi,
       chance,
       chance - chance_half AS chance_lo,
       chance + chance_half AS chance_hi,
       off_word_share,
       CASE WHEN off_word_share IS NOT NULL THEN off_word_share - off_word_half END AS off_word_lo,
       CASE WHEN off_word_share IS NOT NULL THEN off_word_share + off_word_half END AS off_word_hi
FROM s;

CREATE OR REPLACE VIEW sense_probe_summary AS
SELECT * FROM sense_probe_summary_all
WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary);
