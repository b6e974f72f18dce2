"""One rule per setting (issue 24): the Python API refuses what the CLI and the TOML do,
with the same line, because all three read limits.LIMITS."""

from __future__ import annotations

from pathlib import Path

import pytest

from factorscope.errors import InputError
from factorscope.stages.ingest import IngestConfig
from factorscope.stages.learn import LearnConfig
from factorscope.stages.pipeline_config import load_pipeline_config

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("section", "key", "value", "build"),
    [
        ("learn", "lambda1", 2e6, lambda v: LearnConfig(lambda1=v)),
        ("learn", "lambda1", 0.0, lambda v: LearnConfig(lambda1=v)),
        ("learn", "n_factors", 0, lambda v: LearnConfig(n_factors=v)),
        ("ingest", "max_length", 5000, lambda v: IngestConfig(max_length=v)),
        ("ingest", "chunk_size", 0, lambda v: IngestConfig(chunk_size=v)),
    ],
)
def test_python_api_and_toml_refuse_alike(section, key, value, build, tmp_path: Path) -> None:
    with pytest.raises(InputError) as api:
        build(value)
    config = tmp_path / "c.toml"
    config.write_text(f"[{section}]\n{key} = {value!r}\n")
    with pytest.raises(InputError) as toml:
        load_pipeline_config(config)
    range_text = str(api.value).split(" must be ", 1)[1].rsplit(", not", 1)[0]
    assert range_text in str(toml.value), (api.value, toml.value)
