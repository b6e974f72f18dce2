"""Dictionary sweep (issue 13, part 4): size, training length, lambda and corpus, by measurement.

Run (one thread, low priority; resumes: points already in --out are skipped)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        nice -n 19 python bench/sweep_dictionary.py

Data: the pipeline's own corpus readers (``read_corpus``: fortunes and shakespeare
with the demo's filters, 4..48 words) and WordNet 3.0 example sentences (the quoted
examples in the glosses of /usr/share/wordnet/data.*), through the packaged
all-MiniLM-L6-v2 with the pipeline's tokenizer and forward pass (``_hidden.token_states``,
cached under bench/.cache). Per corpus, a seeded split gives a training pool and a
held-out set of sentences.

Each point fits one ``DictionaryLearner`` (center-scale, seed 0, one SPAMS thread) on
``n_train`` (layer, token) vectors sampled uniformly from the training pool(s) of its
corpus, for ``passes`` passes, and codes held-out text with ``SparseEncoder`` at two
lambdas: the training lambda (what ``factorscope encode`` uses) and the lambda that
gives mean L0 = ``--target-l0`` on held-out fortunes (searched on a subset). Scores
per lambda, on held-out text of each corpus (in-corpus and not):

* FVU (``fraction_of_variance_unexplained`` of the preprocessed vectors, per layer,
  each layer against its own mean) and mean L0, per layer, for all tokens and for
  content words (the first piece of a word of 4+ letters, all alphabetic);
* word factors at layer 0, on all held-out fortunes tokens: a factor is a *word
  factor* when, for some word w occurring n_w >= 5 times in that text, at least half
  of the factor's top min(200, n_w) contexts (tokens by alpha, layer 0; a factor with
  fewer active tokens counts the missing ones as not w) are pieces of w; the share is
  over factors active at layer 0. The fixed top-200 and top-20 versions are reported
  beside it;
* fit time (wall and CPU, one thread) and encode rate (vectors/s, wall and CPU).

Rows go to ``--out`` (JSON lines, one per point and lambda, written as each point
finishes) and a summary (targets of issue 13, Pareto fronts) to ``--summary``.
Sense separation (issue 13, part 2) is not computed here: it needs
``factorscope.stages.probe``'s scoring, which this script does not copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hidden

from factorscope.ingest.corpus import CorpusConfig, normalise_whitespace, read_corpus
from factorscope.sparse import (
    DictionaryLearner,
    SparseEncoder,
    fraction_of_variance_unexplained,
)

log = logging.getLogger("sweep_dictionary")

WORDNET_DIR = Path("/usr/share/wordnet")
_QUOTED = re.compile(r'"([^"]+)"')

# corpus -> (training-pool sentences, held-out sentences)
SPLITS = {"fortunes": (1500, 600), "shakespeare": (750, 300), "wordnet": (750, 300)}
CORPORA = tuple(SPLITS)
EVAL_TOKENS = 1000  # held-out tokens per corpus scored at every layer
SEARCH_TOKENS = 300  # held-out fortunes tokens (x every layer) for the lambda search
MIN_WORD_COUNT = 5  # a word needs this many occurrences to make a factor a word factor
TOP = 200

# The demo (configs/default.toml): 4,000 fortunes sentences (~80k tokens measured in
# issue 13), a 100k-vector sample, 2 passes of batch 256, 7 layers encoded.
DEMO_TOKENS = 80_000
DEMO_LAYERS = 7
DEMO_BUDGET_S = 600
# README: the default `make demo` pipeline took 3 min 13 s on an idle 2-core machine with
# today's defaults (the BASELINE point's recipe); other points add their extra CPU time.
DEMO_MEASURED_S = 193
BASELINE = ("F-1024-100k-2p", "train")


@dataclass(frozen=True)
class Point:
    name: str
    corpus: str  # "+"-joined corpus names
    n_factors: int
    n_train: int  # training vectors (sample size)
    passes: float
    lambda_train: float = 0.07
    batch_size: int = 256

    @property
    def n_iter(self) -> int:
        return math.ceil(self.passes * self.n_train / self.batch_size)

    @property
    def signals(self) -> int:
        return self.n_iter * self.batch_size


# In priority order (a stopped sweep keeps the first ones).
POINTS = [
    Point("F-1024-100k-2p", "fortunes", 1024, 100_000, 2),  # today's defaults
    Point("F-1024-50k-1p", "fortunes", 1024, 50_000, 1),
    Point("F-2048-50k-1p", "fortunes", 2048, 50_000, 1),
    Point("F-4096-25k-1p-b1024", "fortunes", 4096, 25_000, 1, batch_size=1024),
    Point("FS-1024-50k-1p", "fortunes+shakespeare", 1024, 50_000, 1),
    Point("F-1024-100k-1p", "fortunes", 1024, 100_000, 1),
    Point("F-1024-25k-2p", "fortunes", 1024, 25_000, 2),
    Point("F-1024-50k-1p-lam0.1", "fortunes", 1024, 50_000, 1, lambda_train=0.1),
    Point("F-1024-50k-1p-lam0.05", "fortunes", 1024, 50_000, 1, lambda_train=0.05),
    Point("FSW-1024-50k-1p", "fortunes+shakespeare+wordnet", 1024, 50_000, 1),
    Point("F-2048-50k-1p-lam0.1", "fortunes", 2048, 50_000, 1, lambda_train=0.1),
    Point("F-2048-100k-1p", "fortunes", 2048, 100_000, 1),
    Point("F-4096-100k-1p-b1024", "fortunes", 4096, 100_000, 1, batch_size=1024),
    Point("F-4096-100k-1p-b1024-lam0.11", "fortunes", 4096, 100_000, 1, 0.11, batch_size=1024),
]


# ---------------------------------------------------------------------------- data
def wordnet_examples() -> list[str]:
    """The quoted example sentences of WordNet 3.0's glosses (4..48 words, de-duplicated)."""
    seen: set[str] = set()
    out: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{pos}"
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            gloss = line.split("|", 1)[1]
            for part in gloss.split(";"):
                for ex in _QUOTED.findall(part):
                    text = normalise_whitespace(ex)
                    if 4 <= len(text.split()) <= 48 and text not in seen:
                        seen.add(text)
                        out.append(text)
    return out


def corpus_sentences(name: str) -> list[str]:
    if name == "wordnet":
        return wordnet_examples()
    return [s.text for s in read_corpus(CorpusConfig(source=name, max_sentences=None))]


def load_corpora(cache_dir: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{corpus: {"train": states, "test": states}} (see ``_hidden.token_states``)."""
    out = {}
    for name, (n_train, n_test) in SPLITS.items():
        sents = corpus_sentences(name)
        pick = np.random.default_rng(0).permutation(len(sents))
        parts = {
            "train": [sents[i] for i in pick[:n_train]],
            "test": [sents[i] for i in pick[n_train : n_train + n_test]],
        }
        out[name] = {}
        for part, texts in parts.items():
            t = time.perf_counter()
            cache = cache_dir / f"sweep_dictionary_{name}_{part}_{len(texts)}.npz"
            st = _hidden.token_states(texts, cache=cache)
            out[name][part] = st
            log.info(
                "%s %s: %d sentences (of %d), %d tokens, %.1fs",
                name,
                part,
                len(texts),
                len(sents),
                st["X"].shape[1],
                time.perf_counter() - t,
            )
    return out


def content_mask(st: dict[str, np.ndarray]) -> np.ndarray:
    """First piece of a word of 4+ letters (all alphabetic)."""
    return st["first"] & np.array([len(w) >= 4 and w.isalpha() for w in st["word"]])


def training_vectors(data, corpus: str, n: int, seed: int = 0):
    """``n`` (layer, token) vectors drawn uniformly, split evenly over the corpora."""
    names = corpus.split("+")
    rng = np.random.default_rng(seed)
    xs, ls = [], []
    for i, name in enumerate(names):
        X = data[name]["train"]["X"]  # (L, T, d)
        n_l, n_t, d = X.shape
        k = n // len(names) + (1 if i < n % len(names) else 0)
        flat = rng.choice(n_l * n_t, size=min(k, n_l * n_t), replace=False)
        xs.append(X.reshape(-1, d)[flat])
        ls.append(flat // n_t)
    return np.concatenate(xs), np.concatenate(ls).astype(np.int64)


def eval_set(st: dict[str, np.ndarray], n_tokens: int, seed: int = 1):
    """Every layer of ``n_tokens`` seeded held-out tokens: X, layers, content flags."""
    X = st["X"]
    n_l, n_t, d = X.shape
    tok = np.sort(np.random.default_rng(seed).choice(n_t, size=min(n_tokens, n_t), replace=False))
    cont = content_mask(st)[tok]
    return (
        X[:, tok, :].reshape(-1, d),
        np.repeat(np.arange(n_l), len(tok)),
        np.tile(cont, n_l),
    )


# ---------------------------------------------------------------------------- scoring
def encode(enc: SparseEncoder, X, layers):
    t, c = time.perf_counter(), time.process_time()
    A = enc.transform(X, layers=layers)
    return A, time.perf_counter() - t, time.process_time() - c


def score_codes(enc, X, layers, content, A) -> dict:
    """Per layer: FVU and mean L0 over all tokens and over content words."""
    Xp = enc.preprocess(X, layers=layers)
    res = enc.squared_residuals(X, A, layers=layers)
    l0 = np.diff(A.indptr)
    out = {}
    for k in np.unique(layers):
        sel = layers == k
        cs = sel & content
        out[int(k)] = {
            "fvu": fraction_of_variance_unexplained(Xp[sel], res[sel]),
            "l0": float(l0[sel].mean()),
            "fvu_content": fraction_of_variance_unexplained(Xp[cs], res[cs]),
            "l0_content": float(l0[cs].mean()),
            "n": int(sel.sum()),
            "n_content": int(cs.sum()),
        }
    out["all"] = {
        "fvu_layer_mean": float(np.mean([v["fvu"] for v in out.values()])),
        "fvu_max": float(max(v["fvu"] for v in out.values())),
        "mean_l0": float(l0.mean()),
        "l0_content_max": float(max(v["l0_content"] for k, v in out.items() if k != "all")),
        "l0_content_mean": float(l0[content].mean()),
    }
    return out


def word_factor_share(A0, words: np.ndarray) -> dict:
    """Share of layer-0 factors whose top contexts are mostly one word (module docstring)."""
    freq = Counter(words.tolist())
    C = A0.tocsc()
    n_active = fl = f200 = f20 = 0
    for j in range(C.shape[1]):
        lo, hi = C.indptr[j], C.indptr[j + 1]
        if hi == lo:
            continue
        n_active += 1
        rows = C.indices[lo:hi][np.argsort(-C.data[lo:hi], kind="stable")][:TOP]
        top = words[rows]
        best = 0.0
        for w in set(top.tolist()):
            n_w = freq[w]
            if n_w < MIN_WORD_COUNT:
                continue
            k = min(TOP, n_w)
            best = max(best, float((top[:k] == w).sum()) / k)
        fl += best >= 0.5
        c200 = Counter(top.tolist()).most_common(1)[0][1]
        f200 += c200 / TOP >= 0.5
        c20 = Counter(top[:20].tolist()).most_common(1)[0][1]
        f20 += c20 / 20 >= 0.5
    return {
        "n_active": n_active,
        "freq_limited": fl / max(n_active, 1),
        "top200": f200 / max(n_active, 1),
        "top20": f20 / max(n_active, 1),
    }


def lambda_for_l0(dl, X, layers, target: float, start: float, n_steps: int = 6) -> float:
    """Lambda whose mean L0 on (X, layers) is ``target`` (secant steps in log-log)."""
    pts: list[tuple[float, float]] = []
    lam = start
    for _ in range(n_steps):
        A = SparseEncoder(dl, lambda1=lam, n_jobs=1).transform(X, layers=layers)
        l0 = max(A.nnz / X.shape[0], 1e-3)
        pts.append((math.log(lam), math.log(l0)))
        if abs(l0 - target) / target < 0.02:
            break
        if len(pts) == 1:
            slope = -1.1  # L0 ~ lambda^-1.1 in docs/SWEEP.md round 1
        else:
            (a0, b0), (a1, b1) = pts[-2], pts[-1]
            slope = (b1 - b0) / (a1 - a0) if a1 != a0 else -1.1
            slope = min(-0.3, max(-3.0, slope))
        lam = math.exp(pts[-1][0] + (math.log(target) - pts[-1][1]) / slope)
    return lam


# ---------------------------------------------------------------------------- one point
def run_point(p: Point, data, evals, search, l0_eval, target_l0: float, dict_dir: Path):
    X, L = training_vectors(data, p.corpus, p.n_train)
    c0 = time.process_time()
    dl = DictionaryLearner(
        p.n_factors,
        lambda1=p.lambda_train,
        batch_size=p.batch_size,
        n_iter=p.n_iter,
        n_jobs=1,
        seed=0,
    ).fit(X, layers=L)
    fit_cpu = time.process_time() - c0
    log.info("%s: fit %d signals in %.0fs (cpu %.0fs)", p.name, p.signals, dl.fit_seconds_, fit_cpu)
    dict_dir.mkdir(parents=True, exist_ok=True)
    np.save(dict_dir / f"{p.name}.npy", dl.components_)
    (dict_dir / f"{p.name}.json").write_text(json.dumps(dl.to_dict()))

    t = time.perf_counter()
    lam_l0 = lambda_for_l0(dl, *search, target_l0, p.lambda_train)
    search_s = time.perf_counter() - t
    rows = []
    for mode, lam in (("train", p.lambda_train), (f"L0={target_l0:g}", lam_l0)):
        enc = SparseEncoder(dl, lambda1=lam, n_jobs=1)
        per_corpus, wall, cpu, n_vec, used = {}, 0.0, 0.0, 0, np.zeros(p.n_factors, bool)
        for name, (Xe, Le, Ce) in evals.items():
            A, w, c = encode(enc, Xe, Le)
            wall, cpu, n_vec = wall + w, cpu + c, n_vec + Xe.shape[0]
            used[A.indices] = True
            per_corpus[name] = score_codes(enc, Xe, Le, Ce, A)
        A0, _, _ = encode(enc, l0_eval[0], np.zeros(l0_eval[0].shape[0], np.int64))
        words = word_factor_share(A0, l0_eval[1])
        enc_rate_cpu = n_vec / cpu
        row = {
            "point": p.name,
            **asdict(p),
            "n_iter": p.n_iter,
            "fit_signals": p.signals,
            "lambda_mode": mode,
            "lambda_encode": lam,
            "fit_seconds": dl.fit_seconds_,
            "fit_cpu_seconds": fit_cpu,
            "fit_signals_per_cpu_s": p.signals / fit_cpu,
            "encode_vectors": n_vec,
            "encode_vectors_per_s": n_vec / wall,
            "encode_vectors_per_cpu_s": enc_rate_cpu,
            "lambda_search_seconds": search_s,
            "dead_factors": int((~used).sum()),
            "scores": per_corpus,
            "word_factors_layer0": words,
            # the demo's learn (this recipe) + encode (7 x 80k vectors), one core
            "demo_learn_encode_cpu_s": fit_cpu + DEMO_LAYERS * DEMO_TOKENS / enc_rate_cpu,
            "loadavg": os.getloadavg()[0],
        }
        rows.append(row)
        f = per_corpus["fortunes"]["all"]
        log.info(
            "  %s lambda %.4g: fortunes FVU max %.3f mean %.3f L0 %.1f content-L0 max %.1f | "
            "word factors %.2f (top200 %.2f) | %.0f vec/cpu-s",
            mode,
            lam,
            f["fvu_max"],
            f["fvu_layer_mean"],
            f["mean_l0"],
            f["l0_content_max"],
            words["freq_limited"],
            words["top200"],
            enc_rate_cpu,
        )
    return rows


# ---------------------------------------------------------------------------- summary
def in_and_other(corpus: str) -> tuple[list[str], list[str]]:
    ins = corpus.split("+")
    return ins, [c for c in CORPORA if c not in ins]


def targets(row: dict, forward_cpu_s: float, base_cpu_s: float | None) -> dict:
    """Issue 13's targets for one row (in-corpus = the held-out text of its training corpora)."""
    s = row["scores"]
    ins, others = in_and_other(row["corpus"])
    f = s["fortunes"]
    layers = [k for k in f if k != "all"]
    out = {
        "fvu_every_layer_le_0.25": f["all"]["fvu_max"] <= 0.25,
        "mean_l0_le_20": f["all"]["mean_l0"] <= 20.5,
        "content_l0_every_layer_le_30": f["all"]["l0_content_max"] <= 30,
    }
    ratio, dfvu = {}, {}
    for o in CORPORA[1:]:  # reported for every text; a target only where it is "other"
        ratio[o] = max(s[o][k]["l0_content"] / f[k]["l0_content"] for k in layers)
        dfvu[o] = max(s[o][k]["fvu"] - f[k]["fvu"] for k in layers)
    out["other_content_l0_ratio_max"] = ratio
    out["other_fvu_diff_max"] = dfvu
    out["other_within_1.2x_and_0.05"] = {o: ratio[o] <= 1.2 and dfvu[o] <= 0.05 for o in others}
    demo = row["demo_learn_encode_cpu_s"] + forward_cpu_s
    out["demo_cpu_s_one_core"] = demo
    if base_cpu_s is not None:
        # the measured demo plus this point's extra CPU time, spread over both cores
        # (best case) or on one (worst case); "fits" is judged on the worst case
        extra = row["demo_learn_encode_cpu_s"] - base_cpu_s
        out["demo_wall_s_estimate"] = [DEMO_MEASURED_S + extra / 2, DEMO_MEASURED_S + extra]
        out["demo_fits_10min_2cores"] = DEMO_MEASURED_S + max(extra, 0) <= DEMO_BUDGET_S
    out["in_corpus"] = ins
    return out


def pareto(rows: list[dict], *keys: str) -> list[str]:
    """Names of rows not dominated in ``keys``, all lower-is-better."""
    front = []
    for r in rows:
        if not any(
            all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys) for o in rows
        ):
            front.append(f"{r['point']} @ {r['lambda_mode']}")
    return front


def summarize(rows: list[dict], forward_cpu_s: float, meta: dict) -> dict:
    flat = []
    for r in rows:
        f = r["scores"]["fortunes"]["all"]
        flat.append(
            {
                "point": r["point"],
                "lambda_mode": r["lambda_mode"],
                "fvu_max": f["fvu_max"],
                "fvu_mean": f["fvu_layer_mean"],
                "mean_l0": f["mean_l0"],
                "fit_cpu_seconds": r["fit_cpu_seconds"],
                "demo_cpu_s": r["demo_learn_encode_cpu_s"] + forward_cpu_s,
            }
        )
    base = [r for r in rows if (r["point"], r["lambda_mode"]) == BASELINE]
    base_cpu = base[0]["demo_learn_encode_cpu_s"] if base else None
    return {
        "meta": meta,
        "targets": {
            f"{r['point']} @ {r['lambda_mode']}": targets(r, forward_cpu_s, base_cpu) for r in rows
        },
        "pareto_fvu_mean_vs_l0": pareto(flat, "fvu_mean", "mean_l0"),
        "pareto_fvu_max_vs_l0": pareto(flat, "fvu_max", "mean_l0"),
        "pareto_fvu_mean_vs_fit_cpu": pareto(flat, "fvu_mean", "fit_cpu_seconds"),
        "pareto_fvu_mean_vs_demo_cpu": pareto(flat, "fvu_mean", "demo_cpu_s"),
        # at equal sparsity (the L0-matched rows): quality against the demo's cost
        "pareto_at_target_l0_fvu_mean_vs_demo_cpu": pareto(
            [r for r in flat if r["lambda_mode"] != "train"], "fvu_mean", "demo_cpu_s"
        ),
        # what the pipeline can run (encode uses the training lambda)
        "pareto_train_lambda_fvu_mean_vs_l0": pareto(
            [r for r in flat if r["lambda_mode"] == "train"], "fvu_mean", "mean_l0"
        ),
    }


def _short(mode: str) -> str:
    return "λ train" if mode == "train" else mode


def markdown(rows: list[dict], summary: dict) -> str:
    """The tables of docs/SWEEP.md's section for this sweep."""
    n_layers = len([k for k in rows[0]["scores"]["fortunes"] if k != "all"])
    lay = range(n_layers)
    out = [
        "In-corpus quality (held-out fortunes, every layer of "
        f"{EVAL_TOKENS} tokens; content = first piece of words of 4+ letters):",
        "",
        "| point | λ | mean L0 | "
        + " | ".join(f"FVU L{k}" for k in lay)
        + " | FVU mean | FVU max | content L0 L0 / L6 / max | dead |",
        "|---|---|---|" + "---|" * n_layers + "---|---|---|---|",
    ]
    for r in rows:
        f = r["scores"]["fortunes"]
        a = f["all"]
        out.append(
            f"| {r['point']} | {_short(r['lambda_mode'])} {r['lambda_encode']:.3f} | "
            f"{a['mean_l0']:.1f} | "
            + " | ".join(f"{f[str(k)]['fvu']:.3f}" for k in lay)
            + f" | {a['fvu_layer_mean']:.3f} | {a['fvu_max']:.3f} | "
            f"{f['0']['l0_content']:.0f} / {f[str(n_layers - 1)]['l0_content']:.0f} / "
            f"{a['l0_content_max']:.0f} | {r['dead_factors']} |"
        )
    out += [
        "",
        "Other text, word factors, cost (ratio = worst layer's content-word L0 on that text "
        "over fortunes'; ΔFVU = worst layer's FVU difference; word factors at layer 0 on "
        "held-out fortunes: frequency-limited / fixed top-200 / top-20; CPU seconds on one "
        "thread; demo = estimated one-core CPU seconds of the demo's ingest forward pass + "
        "this learn recipe + encoding 7 × 80k vectors):",
        "",
        "| point | λ | shakespeare ratio / ΔFVU | wordnet ratio / ΔFVU | word factors "
        "| fit CPU s | encode vec/CPU-s | demo CPU s | demo wall s (est.) | targets met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = summary["targets"][f"{r['point']} @ {r['lambda_mode']}"]
        cells = []
        for c in ("shakespeare", "wordnet"):
            cells.append(
                f"{t['other_content_l0_ratio_max'][c]:.2f} / {t['other_fvu_diff_max'][c]:+.3f}"
                + (" (in)" if c in t["in_corpus"] else "")
            )
        w = r["word_factors_layer0"]
        met = [
            name
            for name, key in (
                ("FVU≤0.25", "fvu_every_layer_le_0.25"),
                ("L0≤20", "mean_l0_le_20"),
                ("content≤30", "content_l0_every_layer_le_30"),
                ("demo", "demo_fits_10min_2cores"),
            )
            if t.get(key)
        ] + [f"other:{o}" for o, ok in t["other_within_1.2x_and_0.05"].items() if ok]
        out.append(
            f"| {r['point']} | {_short(r['lambda_mode'])} | {cells[0]} | {cells[1]} | "
            f"{w['freq_limited']:.2f} / {w['top200']:.2f} / {w['top20']:.2f} | "
            f"{r['fit_cpu_seconds']:.0f} | {r['encode_vectors_per_cpu_s']:.0f} | "
            f"{t['demo_cpu_s_one_core']:.0f} | "
            + (
                "{:.0f}–{:.0f}".format(*sorted(t["demo_wall_s_estimate"]))
                if "demo_wall_s_estimate" in t
                else "–"
            )
            + f" | {', '.join(met) or '–'} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/sweep_dictionary.jsonl"))
    ap.add_argument(
        "--summary", type=Path, default=Path("bench/results/sweep_dictionary_summary.json")
    )
    ap.add_argument("--cache-dir", type=Path, default=Path("bench/.cache"))
    ap.add_argument("--points", default="", help="comma-separated point names (default: all)")
    ap.add_argument("--target-l0", type=float, default=20.0)
    ap.add_argument("--summary-only", action="store_true", help="rewrite the summary from --out")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch

    torch.set_num_threads(1)

    rows = [json.loads(ln) for ln in args.out.read_text().splitlines()] if args.out.exists() else []
    done = {r["point"] for r in rows}
    t0, c0 = time.perf_counter(), time.process_time()
    data = load_corpora(args.cache_dir)
    n_tokens = sum(data[c][p]["X"].shape[1] for c in CORPORA for p in ("train", "test"))
    meta_path = args.cache_dir / "sweep_dictionary_forward.json"
    if meta_path.exists():
        fwd = json.loads(meta_path.read_text())
    else:  # first run: the forward passes just ran, timed here
        fwd = {"tokens": n_tokens, "cpu_s": time.process_time() - c0}
        meta_path.write_text(json.dumps(fwd))
    forward_cpu_s = DEMO_TOKENS * fwd["cpu_s"] / fwd["tokens"]
    meta = {
        "splits": SPLITS,
        "eval_tokens_per_corpus": EVAL_TOKENS,
        "target_l0": args.target_l0,
        "tokens": {c: {p: int(data[c][p]["X"].shape[1]) for p in data[c]} for c in CORPORA},
        "forward_tokens_per_cpu_s": fwd["tokens"] / fwd["cpu_s"],
        "demo_forward_cpu_s": forward_cpu_s,
        "demo_tokens": DEMO_TOKENS,
        "data_seconds": time.perf_counter() - t0,
    }
    if not args.summary_only:
        evals = {c: eval_set(data[c]["test"], EVAL_TOKENS) for c in CORPORA}
        search = eval_set(data["fortunes"]["test"], SEARCH_TOKENS, seed=2)[:2]
        ft = data["fortunes"]["test"]
        l0_eval = (ft["X"][0], ft["word"])
        wanted = [s for s in args.points.split(",") if s]
        for p in POINTS:
            if (wanted and p.name not in wanted) or p.name in done:
                continue
            new = run_point(
                p, data, evals, search, l0_eval, args.target_l0, args.cache_dir / "dictionaries"
            )
            with args.out.open("a") as fh:
                for r in new:
                    fh.write(json.dumps(r) + "\n")
            rows.extend(json.loads(json.dumps(r)) for r in new)  # str keys, as when read
    summary = summarize(rows, forward_cpu_s, meta)
    args.summary.write_text(json.dumps(summary, indent=2))
    if args.markdown is not None and rows:
        args.markdown.write_text(markdown(rows, summary))
    log.info("%d rows; summary in %s", len(rows), args.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
