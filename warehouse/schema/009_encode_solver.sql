-- 009_encode_solver: which solver wrote a dictionary's codes.
--
-- {"backend": "spams", "version": "2.6.5.4"}: the lasso backend of `encode --backend` and
-- its package's version, set when the encode finishes (NULL for a dictionary not encoded
-- since schema 9). The live analysis (the Analyze page, probe, effects) codes text with
-- this backend, so it reproduces the stored codes with the same solver.
ALTER TABLE dictionaries ADD COLUMN IF NOT EXISTS encode_solver JSON;

INSERT INTO schema_version (version, name) VALUES (9, 'encode_solver') ON CONFLICT DO NOTHING;
