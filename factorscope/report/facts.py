"""The run's figures as a file, and the README paragraph quoted from it.

Numbers that describe a run must come from a file a run writes, never from typing
(issue 22: README and the committed report said levels 336/142/546 and 13,857,570 codes
while a fresh `make demo` gave 343/137/544 and 13,883,500). :func:`run_facts` is what
``factorscope report`` writes beside its page (``facts.json``); :func:`readme_block`
renders README's "default run" paragraph from that file, between two marker lines;
``make readme`` (:func:`main`) rewrites it and
``tests/test_readme_figures.py`` fails when README quotes anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from factorscope import __version__
from factorscope.report.model import ReportData, ReportSummary

BEGIN = "<!-- run-figures: generated from docs/report/facts.json by `make readme`; do not edit -->"
END = "<!-- /run-figures -->"
FACTS_NAME = "facts.json"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_facts(summary: ReportSummary, data: ReportData) -> dict[str, Any]:
    """The figures of the reported run, as plain JSON values, with where they were made."""
    quality = [
        {
            "layer": int(r["layer"]),
            "n_vectors": int(r["n_vectors"]),
            "fvu": float(r["fvu"]),
            "mean_l0": float(r["mean_l0"]),
            "dead_factors": int(r["dead_factors"]),
        }
        for r in data.quality
    ]
    n = len(quality) or 1
    senses = None
    if summary.senses:
        senses = [
            {
                "layer": s.layer,
                "n_lemmas": s.n_lemmas,
                "codes": s.codes,
                "codes_lo": s.codes_lo,
                "codes_hi": s.codes_hi,
                "states": s.states,
                "chance": s.chance,
                "off_word_share": s.off_word_share,
            }
            for s in summary.senses
        ]
    overview = data.overview
    return {
        "model": summary.model,
        "corpus": summary.corpus,
        "n_sentences": summary.n_sentences,
        "n_tokens": summary.n_tokens,
        "n_layers": summary.n_layers,
        "dictionary_id": overview.get("dictionary_id"),
        "n_factors": summary.n_factors,
        "lambda1": overview.get("lambda1"),
        "n_vectors": sum(q["n_vectors"] for q in quality),
        "n_codes": summary.n_codes,
        "n_factors_active": summary.n_factors_active,
        "quality": quality,
        "fvu_mean": sum(q["fvu"] for q in quality) / n,
        "l0_mean": sum(q["mean_l0"] for q in quality) / n,
        "dead_factors_max": max((q["dead_factors"] for q in quality), default=0),
        "levels": dict(summary.level_counts),
        "timings": {k: v for k, v in summary.timings.items()},
        "senses": senses,
        "evidence": _evidence_facts(data),
        "effects_by_level": [
            {
                "level": r["level"],
                "n_factors": int(r["n_factors"]),
                "measure": r["measure"],
                "effect_median": float(r["effect_median"]),
                "control_median": float(r["control_median"]),
                "share_above_control": float(r["share_above_control"]),
            }
            for r in data.effects_by_level
        ]
        or None,
        "made_with": {
            "factorscope": __version__,
            "python": platform.python_version(),
            "torch": _version("torch"),
            "duckdb": _version("duckdb"),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def _evidence_facts(data: ReportData) -> dict[str, Any] | None:
    """Per layer: mean held-out detection of the dictionary and of its controls, and the
    verdict (None when the run was not explained or has no control)."""
    view = data.evidence
    if view is None or not view.comparisons:
        return None
    layers = []
    for layer, c in sorted(view.comparisons.items()):
        if c.learned is None or c.control is None or c.difference is None:
            continue
        layers.append(
            {
                "layer": layer,
                "detection": c.learned.estimate,
                "control": c.control.estimate,
                "difference": c.difference.estimate,
                "difference_low": c.difference.low,
                "difference_high": c.difference.high,
                "verdict": c.verdict,
            }
        )
    return {"dictionary_id": view.dictionary_id, "controls": view.scored_controls, "layers": layers}


def _evidence_sentence(evidence: dict[str, Any] | None) -> str:
    if not evidence or not evidence["layers"]:
        return " The run was not explained against a control."
    layers = evidence["layers"]
    beats = [x for x in layers if x["verdict"] == "beats"]
    det = [x["detection"] for x in layers]
    ctl = [x["control"] for x in layers]
    text = (
        f" Explained (`factorscope explain`, held-out sentences), its factors' mean detection "
        f"is {min(det):.3f}–{max(det):.3f} per layer against {min(ctl):.3f}–{max(ctl):.3f} for "
        f"a Gaussian control at the same mean L0 (chance 0.5): it beats the control at "
        f"{len(beats)} of {len(layers)} layers"
    )
    if beats:
        gaps = [x["difference"] for x in beats]
        text += f", by {min(gaps):.3f}–{max(gaps):.3f}"
    return text + "."


def _effects_sentence(rows: list[dict[str, Any]] | None) -> str:
    if not rows:
        return " Ablation effects were not measured."
    parts = [
        f"{r['level']} {r['effect_median']:.4f} vs {r['control_median']:.4f} "
        f"({100 * r['share_above_control']:.0f}% of {r['n_factors']:,} factors above)"
        for r in rows
    ]
    return (
        " Removing a factor at its peak layer (`factorscope effects`) turns the sentence "
        "embedding (median 1 − cos) by " + "; ".join(parts) + " against a random direction "
        "of the same norm."
    )


def write_facts(path: Path, facts: dict[str, Any]) -> None:
    path.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _seconds(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.0f} s"


def _senses_sentence(senses: list[dict[str, Any]] | None) -> str:
    if not senses:
        return " The run was not probed for word senses."
    first = senses[0]
    best = max(senses, key=lambda s: s["codes"])
    share = [s["codes"] / s["states"] for s in senses if s["states"]]
    return (
        f" The sense probe (`factorscope probe --corpus wordnet`, {first['n_lemmas']:,} WordNet "
        f"words): leave-one-out 1-NN sense accuracy on the codes is {first['codes']:.2f} at "
        f"layer {first['layer']} (chance {first['chance']:.2f}) and peaks at "
        f"{best['codes']:.2f} at layer {best['layer']} (95% CI {best['codes_lo']:.2f}–"
        f"{best['codes_hi']:.2f}), {100 * min(share):.0f}–{100 * max(share):.0f}% of the "
        "hidden states' accuracy per layer."
    )


def readme_block(facts: dict[str, Any]) -> str:
    """README's paragraph on the default run, every number from ``facts``."""
    quality = facts["quality"]
    fvus = [q["fvu"] for q in quality]
    levels = facts["levels"]
    timings = facts["timings"]
    made = facts["made_with"]
    text = (
        f"On the default `make demo` run ({facts['n_sentences']:,} sentences, "
        f"{facts['n_tokens']:,} tokens, {facts['n_layers']} layers; dictionary "
        f"{facts['dictionary_id']} of {facts['n_factors']:,} factors, λ {facts['lambda1']:g}; "
        f"{facts['n_vectors']:,} token × layer vectors encoded into {facts['n_codes']:,} "
        f"codes) the layer-mean FVU is **{facts['fvu_mean']:.3f} at mean L0 "
        f"{facts['l0_mean']:.1f}** (per layer {min(fvus):.2f}–{max(fvus):.2f}), "
        + (
            "no dead factors"
            if not facts["dead_factors_max"]
            else f"at most {facts['dead_factors_max']} dead factors per layer"
        )
        + ", and the levels are "
        f"{levels.get('low', 0):,} low / {levels.get('mid', 0):,} mid / "
        f"{levels.get('high', 0):,} high."
        + _senses_sentence(facts.get("senses"))
        + _evidence_sentence(facts.get("evidence"))
        + _effects_sentence(facts.get("effects_by_level"))
        + " Stage "
        "times of that run, which depend on the machine and on what else it ran: ingest "
        f"{_seconds(timings.get('ingest_seconds'))}, learn "
        f"{_seconds(timings.get('fit_seconds'))}, encode {_seconds(timings.get('encode_seconds'))}"
        f" ({made['cpus']} CPUs, {made['machine']}, torch {made['torch']}, factorscope "
        f"{made['factorscope']})."
    )
    return f"{BEGIN}\n{_wrap(text)}\n{END}"


def _wrap(text: str, width: int = 90) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def quoted_block(readme_text: str) -> str | None:
    """The generated block README holds (None when it has none)."""
    found = _BLOCK.search(readme_text)
    return found.group(0) if found else None


def sync_readme(readme: Path, facts_path: Path) -> bool:
    """Rewrite README's block from ``facts_path``; whether anything changed."""
    facts = json.loads(facts_path.read_text("utf-8"))
    text = readme.read_text("utf-8")
    if quoted_block(text) is None:
        raise SystemExit(f"{readme} has no {BEGIN!r} … {END!r} block")
    new = _BLOCK.sub(lambda _m: readme_block(facts), text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--facts", type=Path, default=Path("docs/report") / FACTS_NAME)
    args = parser.parse_args(argv)
    changed = sync_readme(args.readme, args.facts)
    print(f"{args.readme}: {'updated from' if changed else 'already quotes'} {args.facts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
