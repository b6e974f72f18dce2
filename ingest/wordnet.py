"""The built-in corpus ``wordnet``: WordNet 3.0's example sentences, each with its sense.

Debian's ``wordnet-base`` installs the WordNet database under :data:`WORDNET_DIR`. Every
line of ``data.{noun,verb,adj,adv}`` is one synset: its words, then ``|`` and the gloss,
a definition followed by example sentences in double quotes (``...; "he left the
room"``). Each example becomes one record whose metadata says which sense it shows:

``lemma``
    the synset's word that the example uses (``leave``);
``word``
    that word as the example writes it, lower-cased (``left``): the token a probe reads;
``synset``
    the synset id, offset and part of speech (``02009433v``), unique in WordNet 3.0;
``pos``
    ``n``, ``v``, ``a`` (adjectives and satellites) or ``r``;
``lexname``
    the lexicographer file (``verb.motion``, ``adj.all``): WordNet's coarse sense class
    (a "supersense");
``gloss``
    the definition, without the examples.

Which synset word an example uses: the example's words (letters, inner hyphens and
apostrophes) are compared, in order of the synset's words, with each word and with its
base forms under WordNet's own rules (the exception lists ``*.exc``, such as ``left`` ->
``leave``, then the regular suffixes of the part of speech, as WordNet's morphy does).
The first synset word that one of the example's words reduces to wins, at its first
occurrence. Multi-word synset entries (``turn_in``) are not matched, and an example that
uses none of the synset's single words is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

from factorscope.errors import InputError

WORDNET_DIR = Path("/usr/share/wordnet")
POS_FILES = ("noun", "verb", "adj", "adv")
_POS_OF_FILE = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}

LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
"""The lexicographer files by number (lexnames(5WN))."""

# WordNet's morphy: regular suffixes per part of speech (suffix, replacement).
_SUFFIXES = {
    "n": (
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ),
    "v": (
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")
_EXAMPLE = re.compile(r'"([^"]+)"')
_MARKER = re.compile(r"\([a-z]+\)$")  # adjective position markers: (a), (p), (ip)


@dataclass(frozen=True)
class Example:
    """One example sentence of one synset, with the synset word it uses."""

    text: str
    lemma: str
    word: str
    start: int  # character span of ``word`` in ``text``
    end: int
    synset: str
    pos: str
    lexname: str
    gloss: str

    def metadata(self) -> dict[str, str]:
        return {
            "lemma": self.lemma,
            "word": self.word,
            "synset": self.synset,
            "pos": self.pos,
            "lexname": self.lexname,
            "gloss": self.gloss,
        }


def check_installed(root: Path = WORDNET_DIR) -> None:
    missing = [f"data.{p}" for p in POS_FILES if not (root / f"data.{p}").is_file()]
    if missing:
        raise InputError(
            "the built-in corpus 'wordnet' is not installed: "
            "run `sudo apt-get install wordnet-base` (Debian/Ubuntu) or give --corpus PATH"
        )


@lru_cache(maxsize=4)
def _exceptions(root: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(inflected form, pos): base forms} from WordNet's ``*.exc`` files."""
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    for name in POS_FILES:
        path = root / f"{name}.exc"
        if not path.is_file():
            continue
        pos = _POS_OF_FILE[name]
        for line in path.read_text("latin-1").splitlines():
            form, *bases = line.split()
            if bases:
                table[(form, pos)] = tuple(bases)
    return table


def base_forms(form: str, pos: str, exceptions: dict[tuple[str, str], tuple[str, ...]]) -> set[str]:
    """``form`` (lower-cased) and what WordNet's morphy could reduce it to for ``pos``."""
    out = {form, *exceptions.get((form, pos), ())}
    for suffix, replacement in _SUFFIXES[pos]:
        if form.endswith(suffix) and len(form) > len(suffix):
            out.add(form[: -len(suffix)] + replacement)
    return out


def parse_synset(line: str) -> tuple[str, str, str, list[str], str, list[str]] | None:
    """(synset id, pos, lexname, single words, definition, examples) of one data line."""
    if line.startswith("  ") or " | " not in line:
        return None  # the licence header, or a line without a gloss
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexfile, ss_type = fields[0], int(fields[1]), fields[2]
    n_words = int(fields[3], 16)
    words = [_MARKER.sub("", fields[4 + 2 * i]).lower() for i in range(n_words)]
    single = [w for w in words if "_" not in w]
    gloss = gloss.strip()
    examples = [e.strip() for e in _EXAMPLE.findall(gloss) if e.strip()]
    cut = gloss.find('"')
    definition = (gloss[:cut] if cut >= 0 else gloss).strip().rstrip(";").strip()
    pos = "a" if ss_type == "s" else ss_type
    lexname = LEXNAMES[lexfile] if 0 <= lexfile < len(LEXNAMES) else str(lexfile)
    return f"{offset}{ss_type}", pos, lexname, single, definition, examples


def find_lemma(
    text: str, words: list[str], pos: str, exceptions: dict[tuple[str, str], tuple[str, ...]]
) -> tuple[str, str, int, int] | None:
    """(synset word, form as written lower-cased, start, end) of the first synset word
    (in the synset's order) that a word of ``text`` is or reduces to; None if none."""
    found = [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
    reduced = [(form, start, end, base_forms(form, pos, exceptions)) for form, start, end in found]
    for lemma in words:
        for form, start, end, bases in reduced:
            if lemma in bases:
                return lemma, form, start, end
    return None


def examples(root: Path = WORDNET_DIR) -> Iterator[Example]:
    """Every example sentence that uses one of its synset's words, in file order."""
    check_installed(root)
    exceptions = _exceptions(root)
    for name in POS_FILES:
        with (root / f"data.{name}").open(encoding="latin-1") as handle:
            for line in handle:
                parsed = parse_synset(line)
                if parsed is None:
                    continue
                synset, pos, lexname, words, definition, texts = parsed
                for text in texts:
                    text = " ".join(text.split())
                    hit = find_lemma(text, words, pos, exceptions)
                    if hit is None:
                        continue
                    lemma, form, start, end = hit
                    yield Example(text, lemma, form, start, end, synset, pos, lexname, definition)


def records(root: Path = WORDNET_DIR) -> Iterator[tuple[str, str, dict]]:
    """(source, text, metadata) per example: the corpus reader's records."""
    for ex in examples(root):
        yield f"wordnet/{ex.synset}", ex.text, ex.metadata()


# ----------------------------------------------------------------------------------------
# The lexicographer class of a word's most frequent sense (ingest/tagging.py).
#
# ``index.<pos>`` has one line per lemma (lower case, spaces as ``_``); its last
# ``synset_cnt`` fields are the byte offsets of its synsets in ``data.<pos>``, most
# frequent sense first (by the SemCor tag counts). A data line's second field is the
# synset's lexicographer file number (an index into :data:`LEXNAMES`); its words keep
# their case, so ``John`` (a person) and ``john`` (a toilet) are told apart.


def database_version(root: Path = WORDNET_DIR) -> str:
    """ "WordNet 3.0" as the licence header of ``data.noun`` names it, else "WordNet"."""
    try:
        with (root / "data.noun").open(encoding="latin-1") as handle:
            for line in islice(handle, 40):
                found = re.search(r"WordNet \d+(?:\.\d+)*", line)
                if found:
                    return found.group(0)
    except OSError:
        pass
    return "WordNet"


def has_index(root: Path = WORDNET_DIR) -> bool:
    """Whether ``root`` holds every ``index.<pos>`` and ``data.<pos>`` file."""
    return all(
        (root / f"{kind}.{name}").is_file() for name in POS_FILES for kind in ("index", "data")
    )


_FILE_OF_POS = {pos: name for name, pos in _POS_OF_FILE.items()}


@lru_cache(maxsize=8)
def _index(root: Path, pos: str) -> dict[str, str]:
    """{lemma: the rest of its ``index.<pos>`` line} (split lazily: 0.1 s for nouns)."""
    table: dict[str, str] = {}
    path = root / f"index.{_FILE_OF_POS[pos]}"
    for line in path.read_text("latin-1").splitlines():
        if line.startswith(" "):
            continue  # the licence header
        lemma, _, rest = line.partition(" ")
        table[lemma] = rest
    return table


@lru_cache(maxsize=8)
def _data(root: Path, pos: str) -> bytes:
    return (root / f"data.{_FILE_OF_POS[pos]}").read_bytes()


@lru_cache(maxsize=65536)
def _synset_head(root: Path, pos: str, offset: int) -> tuple[str, tuple[str, ...]]:
    """(lexname, words as written, markers removed) of the synset at ``offset``."""
    data = _data(root, pos)
    end = data.find(b"\n", offset)
    fields = data[offset : end if end >= 0 else len(data)].decode("latin-1").split()
    lexfile = int(fields[1])
    lexname = LEXNAMES[lexfile] if 0 <= lexfile < len(LEXNAMES) else str(lexfile)
    n_words = int(fields[3], 16)
    words = tuple(_MARKER.sub("", fields[4 + 2 * i]) for i in range(n_words))
    return lexname, words


@lru_cache(maxsize=131072)
def first_sense_lexname(
    lemma: str, pos: str, *, proper: bool | None = None, root: Path = WORDNET_DIR
) -> str | None:
    """The lexicographer class (``verb.motion``) of the most frequent sense of ``lemma``
    as part of speech ``pos`` (``n``, ``v``, ``a``, ``r``); None if WordNet lacks it.

    ``lemma`` is looked up as given, lower-cased, spaces as ``_`` (no base forms: see
    :func:`base_forms`). ``proper=True`` takes the first sense that writes the word with a
    capital (a proper noun: ``John`` the apostle, not ``john`` the toilet) and None when
    there is none; ``proper=False`` the first sense written in lower case (``china`` the
    porcelain, not ``China``), else the first sense; None the first sense whatever its case.
    """
    key = lemma.strip().lower().replace(" ", "_")
    rest = _index(root, pos).get(key) if key else None
    if rest is None:
        return None
    fields = rest.split()
    try:
        n_senses = int(fields[1])
        offsets = [int(f) for f in fields[len(fields) - n_senses :]] if n_senses > 0 else []
    except (ValueError, IndexError):
        return None
    if not offsets:
        return None
    heads = (_synset_head(root, pos, offset) for offset in offsets)
    if proper is None:
        return next(heads)[0]
    first = None
    for lexname, words in heads:
        first = first or lexname
        written = [w for w in words if w.lower() == key]
        if any((w != w.lower()) == proper for w in written):
            return lexname
    return None if proper else first
