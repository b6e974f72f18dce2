"""The encode engines, by the name ``encode --engine`` takes: the one registry of them.

An engine codes the run's tokens (one shard of them, or all) into a shard folder that
``factorscope merge`` turns into the warehouse. ``local`` runs in this process
(:mod:`.shard_encode`; without ``--out`` it writes the database directly, through
:func:`.encode.run_encode`), ``ray`` runs a Ray Data pipeline (:mod:`.ray_engine`).
A new engine is one entry in :data:`ENGINES`; the CLI's choices come from it.

(The registry lives here rather than in ``encode.py`` / ``shard_encode.py`` /
``ray_engine.py``, which are being reshaped into one encode loop with a pluggable engine;
it can move there when that work lands.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factorscope.limits import TOP_K


@dataclass(frozen=True)
class ShardFolderRequest:
    """What an engine is asked to write: ``db``'s tokens (``shard`` of them) into ``out``.

    The defaults are those of ``encode`` (the CLI takes them from here).
    """

    db: Path
    out: Path
    config: Any  # EncodeConfig
    shard: Any = None  # ShardSpec | None: the shard ``db`` was ingested as, or the whole run
    dictionary_db: Path | None = None
    partial_k: int = TOP_K
    workers: int = 1
    ray_address: str | None = None


def _local(request: ShardFolderRequest) -> Any:
    from factorscope.stages.shard_encode import run_shard_encode

    return run_shard_encode(
        request.db,
        request.out,
        shard=request.shard,
        config=request.config,
        partial_k=request.partial_k,
        dictionary_db=request.dictionary_db,
    )


def _ray(request: ShardFolderRequest) -> Any:
    from factorscope.stages.ray_engine import run_ray_encode

    return run_ray_encode(
        request.db,
        request.out,
        shard=request.shard,
        config=request.config,
        workers=request.workers,
        ray_address=request.ray_address,
        partial_k=request.partial_k,
        dictionary_db=request.dictionary_db,
    )


ENGINES: dict[str, Callable[[ShardFolderRequest], Any]] = {"local": _local, "ray": _ray}
"""Encode engines by name; each writes a shard folder and returns a summary with ``line()``."""

DEFAULT_ENGINE = "local"
"""The engine of ``encode`` without ``--engine`` (the only one that can write ``--db``)."""


def run_encode_with(
    engine: str,
    db: Path,
    config: Any,
    *,
    out: Path | None = None,
    shard: str | None = None,
    dictionary_db: Path | None = None,
    partial_k: int = TOP_K,
    workers: int = 1,
    ray_address: str | None = None,
) -> Any:
    """``encode``'s choice of where the codes go: the database itself (the default engine,
    no ``--out``), or a shard folder written by ``engine``. Returns the stage's summary
    (an :class:`~.encode.EncodeSummary` for the database)."""
    from factorscope.errors import InputError

    if shard is None and out is None and dictionary_db is None and engine == DEFAULT_ENGINE:
        from factorscope.stages.encode import run_encode

        return run_encode(db, config)
    if out is None:
        raise InputError(
            f"--shard, --dictionary-db and --engine other than {DEFAULT_ENGINE} write a shard "
            "folder: give --out DIR"
        )
    from factorscope.stages.sharding import ShardSpec

    # Without --shard: the shard --db was ingested as, or else the whole run.
    request = ShardFolderRequest(
        db=db,
        out=out,
        config=config,
        shard=ShardSpec.parse(shard) if shard is not None else None,
        dictionary_db=dictionary_db,
        partial_k=partial_k,
        workers=workers,
        ray_address=ray_address,
    )
    return run_shard_folder(engine, request)


def run_shard_folder(engine: str, request: ShardFolderRequest) -> Any:
    """Run ``engine`` (a name in :data:`ENGINES`) on ``request``."""
    from factorscope.errors import InputError

    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return ENGINES[engine](request)
