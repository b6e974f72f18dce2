"""`factorscope pipeline` (``make ingest``, ``make demo``): every stage of one config in
order, each resumable on its own, so running it again finishes what is missing.

ingest -> learn -> encode the learned dictionary -> for each ``[evidence] controls``
kind: learn the control and encode it -> ``explain`` the dictionary with its controls.
The CLI prints what each stage reports; the sequencing is here, not in the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factorscope.stages.encode import run_encode
from factorscope.stages.explain import ExplainConfig, run_explain
from factorscope.stages.ingest import run_ingest
from factorscope.stages.learn import ControlConfig, run_learn, run_learn_control
from factorscope.stages.pipeline_config import PipelineConfig

Report = Callable[[Any], None]
"""Called with each stage's summary as soon as the stage ends (it has ``.line()``)."""


def run_pipeline(
    db: str | Path, settings: PipelineConfig, *, overwrite: bool = False, report: Report
) -> None:
    report(run_ingest(db, settings.ingest, overwrite=overwrite))
    learned = run_learn(db, settings.learn)
    report(learned)
    # encode the dictionary this config learned, even if a newer one exists
    report(
        run_encode(db, dataclasses.replace(settings.encode, dictionary_id=learned.dictionary_id))
    )
    evidence = settings.evidence
    for kind in evidence.controls:
        control = run_learn_control(
            db, ControlConfig(kind=kind, parent_id=learned.dictionary_id, seed=evidence.seed)
        )
        report(control)
        report(
            run_encode(
                db, dataclasses.replace(settings.encode, dictionary_id=control.dictionary_id)
            )
        )
    if evidence.explain:
        report(run_explain(db, ExplainConfig(dictionary_id=learned.dictionary_id)))
