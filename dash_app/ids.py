"""Every component id of the app, in one place.

Pages import these names instead of spelling ids inline, so a renamed id breaks at
import time rather than silently in the browser.
"""

from __future__ import annotations

# Shell (app.py)
URL = "fs-url"
NAVBAR = "fs-navbar"

# Factor explorer (pages/factor.py)
FACTOR_INPUT = "factor-input"
FACTOR_GO = "factor-go"
FACTOR_FEEDBACK = "factor-feedback"
FACTOR_STATE = "factor-state"  # dcc.Store: {"factor": int, "layer": int} of the rendered page
FACTOR_NAV = "factor-nav"  # dcc.Location inside the page: its callbacks navigate through it
LAYER_SELECT = "factor-layer-select"
RANDOM_LOW = "factor-random-low"
RANDOM_MID = "factor-random-mid"
RANDOM_HIGH = "factor-random-high"
RANDOM_FEEDBACK = "factor-random-feedback"
CONTEXTS_PAGE = "factor-contexts-page"  # dbc.Pagination
CONTEXTS_TABLE = "factor-contexts-table"
CONTEXTS_TOTAL = "factor-contexts-total"
IS_GRAPH = "factor-is-graph"
HIST_GRAPH = "factor-hist-graph"
LEVEL_BADGE = "factor-level"
LABEL_INPUT = "factor-label-input"
LABEL_SAVE = "factor-label-save"
LABEL_FEEDBACK = "factor-label-feedback"
LABEL_AUTO = "factor-label-auto"  # the automatic label, shown beside the box, never in it
LABEL_COUNT = "factor-label-count"  # "n / 200" under the box
INTERVALS = "factor-intervals"
NEIGHBORS = "factor-neighbors"
DICTIONARY_SELECT = "dictionary-select"  # the navbar's picker: encoded dictionaries only
NAV_ACTIVE = "nav-active-dictionary"  # dcc.Store: the active dictionary at page load
NAV_WANT = "nav-want-dictionary"  # dcc.Store: a dictionary chosen on a factor page

# LIME (on the factor explorer)
LIME_SAMPLES = "lime-samples"
LIME_COUNT = "lime-count"
LIME_RUN = "lime-run"
LIME_JOB = "lime-job"  # dcc.Store: the running job's id
LIME_POLL = "lime-poll"  # dcc.Interval
LIME_PROGRESS = "lime-progress"
LIME_OUTPUT = "lime-output"
LIME_FEEDBACK = "lime-feedback"

# Effects card (on the factor explorer)
EFFECTS = "factor-effects"  # the card's body
EFFECTS_KIND = "factor-effects-kind"  # what the run's model gives (no head: the embedding)
EFFECTS_OUTPUT = "factor-effects-output"  # the stored / measured effect, or the button
EFFECTS_RUN = "factor-effects-run"  # "Measure at layer L"
EFFECTS_JOB = "factor-effects-job"  # dcc.Store: the running job's id
EFFECTS_POLL = "factor-effects-poll"  # dcc.Interval
EFFECTS_FEEDBACK = "factor-effects-feedback"  # "Measuring..." and errors
EFFECTS_STEER = "factor-effects-steer"  # link: steer with this factor on the Analyze page

# Analyze a sentence (pages/analyze.py)
ANALYZE_TEXT = "analyze-text"
ANALYZE_TOP = "analyze-top"
ANALYZE_RUN = "analyze-run"
ANALYZE_OUTPUT = "analyze-output"  # drawn by assets/analyze.js, never by Dash
ANALYZE_DATA = "analyze-data"  # dcc.Store: the compact decomposition
ANALYZE_MESSAGE = "analyze-message"  # errors and notes from the server
ANALYZE_SUMMARY = "analyze-summary"  # written by the clientside renderer
ANALYZE_DICTIONARY = "analyze-dictionary"  # dcc.Store: the dictionary of the page's URL
ANALYZE_HEADER = "analyze-header"  # which dictionary the page decomposes with
STEER_FACTOR = "steer-factor"  # the Steer panel: factor number
STEER_LAYER = "steer-layer"  # dbc.Select of the layers
STEER_STRENGTH = "steer-strength"  # empty: the factor's typical α at the layer
STEER_RUN = "steer-run"
STEER_OUTPUT = "steer-output"  # what changed, per upper layer
STEER_MESSAGE = "steer-message"  # errors

# Search (pages/search.py)
SEARCH_WORD = "search-word"
SEARCH_WORD_LAYER = "search-word-layer"
SEARCH_WORD_GO = "search-word-go"
SEARCH_WORD_OUTPUT = "search-word-output"
SEARCH_LABEL = "search-label"
SEARCH_LABEL_GO = "search-label-go"
SEARCH_LABEL_OUTPUT = "search-label-output"

# SQL console (pages/sql.py)
SQL_EXAMPLES = "sql-examples"
SQL_TEXT = "sql-text"
SQL_RUN = "sql-run"
SQL_FEEDBACK = "sql-feedback"
SQL_TABLE = "sql-table"
SQL_DOWNLOAD_BTN = "sql-download-btn"
SQL_DOWNLOAD = "sql-download"
SQL_RESULT = "sql-result"  # dcc.Store: last successful query text

# Run overview (pages/run.py)
RUN_SUMMARY = "run-summary"
RUN_QUALITY = "run-quality"
RUN_LEVELS = "run-levels"

# Compare dictionaries (pages/compare.py)
COMPARE_A = "compare-a"
COMPARE_B = "compare-b"
COMPARE_NAV = "compare-nav"  # dcc.Location inside the page
COMPARE_LIST = "compare-list"
COMPARE_STATS = "compare-stats"
COMPARE_HIST = "compare-hist"
COMPARE_SPLITS = "compare-splits"
COMPARE_PAIRS = "compare-pairs"
COMPARE_FACTOR = "compare-factor"
COMPARE_GO = "compare-go"
COMPARE_FEEDBACK = "compare-feedback"
COMPARE_SIDE = "compare-side"

# Senses (pages/senses.py)
SENSES_LEMMA = "senses-lemma"  # dbc.Select of the probed words
SENSES_NAV = "senses-nav"  # dcc.Location inside the page
SENSES_CURVE = "senses-curve"  # graph: separation per layer, averaged over words
SENSES_LEMMA_CURVE = "senses-lemma-curve"  # graph: separation per layer, one word
SENSES_GROUPS = "senses-groups"  # the occurrences grouped by sense
SENSES_MESSAGE = "senses-message"  # "not probed yet"
SENSES_NOTE = "senses-note"  # "'zebra' was not probed" (the page shows another word)
SENSES_DICTIONARY = "senses-dictionary"  # dcc.Store: the dictionary the page shows
DICTIONARY_BADGE = "dictionary-badge"  # which dictionary a page shows (every page)
RUN_CORPUS = "run-corpus"  # the corpus card: segments not stored, by reason
SEARCH_DICTIONARY = "search-dictionary"  # dcc.Store: the dictionary chosen in the URL

# Explanation card (pages/factor.py)
EXPLANATION = "factor-explanation"  # the card's body: rule, held-out scores
EXPLANATION_CONTROLS = "factor-explanation-controls"  # the controls' detection at this layer

# Evidence (pages/evidence.py)
EVIDENCE_MESSAGE = "evidence-message"  # "not explained yet" / "a control of ..."
EVIDENCE_CONTROLS = "evidence-controls"  # "no control yet" and how to make one
EVIDENCE_FIGURE = "evidence-figure"  # mean detection per layer, dictionary vs controls
EVIDENCE_TABLE = "evidence-table"  # per layer: each dictionary's claims and the verdict
EVIDENCE_QUALITY = "evidence-quality"  # FVU and mean L0 beside the controls'
EVIDENCE_LEVELS = "evidence-levels"  # level distribution of each dictionary
