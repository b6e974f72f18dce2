"""README quotes the run it describes from the file that run's report wrote (issue 22).

README and the committed report once said levels 336/142/546 and 13,857,570 codes while
a fresh `make demo` gave other numbers: figures were typed. Now `factorscope report`
writes ``facts.json`` and README's "default run" paragraph is generated from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factorscope.report import write_report
from factorscope.report.facts import BEGIN, END, quoted_block, readme_block, sync_readme

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(30)
def test_readme_quotes_the_committed_facts():
    facts = json.loads((ROOT / "docs" / "report" / "facts.json").read_text("utf-8"))
    block = quoted_block((ROOT / "README.md").read_text("utf-8"))
    assert block is not None, "README lost its generated run-figures block"
    assert block == readme_block(facts), "README differs from docs/report/facts.json: make readme"


@pytest.mark.timeout(30)
def test_the_committed_report_and_facts_describe_the_same_run():
    facts = json.loads((ROOT / "docs" / "report" / "facts.json").read_text("utf-8"))
    report = (ROOT / "docs" / "report" / "README.md").read_text("utf-8")
    for value in (facts["n_sentences"], facts["n_tokens"], facts["n_codes"]):
        assert f"{value:,}" in report, value


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_writes_the_facts_readme_quotes(tiny_pipeline_db: Path, tmp_path: Path):
    write_report(tiny_pipeline_db, tmp_path / "report", examples_per_level=1)
    facts = json.loads((tmp_path / "report" / "facts.json").read_text("utf-8"))
    assert facts["n_layers"] == 3 and facts["n_codes"] > 0
    assert sum(facts["levels"].values()) == facts["n_factors"]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{BEGIN}\nold figures 336 low\n{END}\n\nrest\n", "utf-8")
    assert sync_readme(readme, tmp_path / "report" / "facts.json")
    text = readme.read_text("utf-8")
    assert "336 low" not in text and f"{facts['n_codes']:,} codes" in text
    assert text.startswith("intro\n\n") and text.endswith("\n\nrest\n")
    assert not sync_readme(readme, tmp_path / "report" / "facts.json")  # already quotes it
