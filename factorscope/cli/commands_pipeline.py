"""`factorscope learn`, `encode` and `pipeline` (ingest -> learn -> encode)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factorscope.cli.app import (
    DEFAULT_DB,
    DbOption,
    DeviceOption,
    ThreadsOption,
    all_or,
    app,
    choice,
    limited,
)
from factorscope.cli.commands_ingest import OverwriteOption
from factorscope.limits import LIMITS, option_many_check
from factorscope.sparse import BACKENDS, CONTROL_KINDS, PREPROCESSING_CHOICES
from factorscope.stages.encode import EncodeConfig
from factorscope.stages.engines import DEFAULT_ENGINE, ENGINES, ShardFolderRequest
from factorscope.stages.learn import LearnConfig

PreprocessingChoice = choice(PREPROCESSING_CHOICES)
ControlChoice = choice(CONTROL_KINDS)
BackendChoice = choice(BACKENDS)
EngineChoice = choice(ENGINES)


def _print_quality(quality: list[dict], level_counts: dict[str, int] | None = None) -> None:
    """Per-layer quality, its layer mean, and the factor level counts."""
    if not quality:
        return
    typer.echo("layer   FVU   mean L0  all-zero  dead factors")
    for q in quality:
        typer.echo(
            f"{q['layer']:>5} {q['fvu']:6.3f} {q['mean_l0']:8.1f} {q['zero_code_share']:8.1%} "
            f"{q['dead_factors']:>12}"
        )
    fvu = sum(q["fvu"] for q in quality) / len(quality)
    l0 = sum(q["mean_l0"] for q in quality) / len(quality)
    typer.echo(f" mean {fvu:6.3f} {l0:8.1f}")
    if level_counts:
        typer.echo("levels: " + ", ".join(f"{n:,} {level}" for level, n in level_counts.items()))


def _parent_check(value: int | None) -> int | None:
    """``--parent``: a dictionary id, in the range of ``--dictionary`` (named as --parent)."""
    from factorscope.errors import InputError

    try:
        return LIMITS["dictionary_id"].check(value, "--parent")
    except InputError as e:
        raise typer.BadParameter(str(e)) from e


_LEARNED_ONLY = ("n_factors", "lambda1", "preprocessing", "batch_size", "n_iter", "max_vectors")
"""learn's options that set how a dictionary is fitted: a control takes them from its parent."""


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed option ``name`` (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


# Over 80 lines: typer declares one annotated parameter per option; the body only builds the
# configs and calls the stage.
@app.command()
def learn(
    ctx: typer.Context,
    db: DbOption = DEFAULT_DB,
    n_factors: Annotated[
        str,
        typer.Option(
            "--n-factors",
            "-m",
            callback=option_many_check("n_factors"),
            help="Dictionary size (atoms); several sizes separated by commas (512,1024,2048) "
            "learn one dictionary each.",
        ),
    ] = str(LearnConfig.n_factors),
    lambda1: Annotated[
        float, limited("lambda1", "--lambda", help="L1 penalty (also used by encode).")
    ] = LearnConfig.lambda1,
    preprocessing: Annotated[
        PreprocessingChoice, typer.Option(help="Per-layer centring and scaling of the vectors.")
    ] = LearnConfig.preprocessing,
    batch_size: Annotated[int, limited("batch_size", "--batch-size")] = LearnConfig.batch_size,
    n_iter: Annotated[
        int | None, limited("n_iter", "--n-iter", help="Online updates (default: 2 epochs).")
    ] = LearnConfig.n_iter,
    max_vectors: Annotated[
        str,
        limited("max_vectors", "--max-vectors", help="Use at most this many vectors, or 'all'."),
    ] = all_or(LearnConfig.max_vectors),
    seed: Annotated[
        str,
        typer.Option(
            "--seed",
            callback=option_many_check("seed"),
            help="Random seed; several separated by commas (0,1) learn one dictionary each.",
        ),
    ] = str(LearnConfig.seed),
    from_npy: Annotated[
        Path | None,
        typer.Option(
            "--from-npy",
            help="Import a dictionary (d x m or m x d .npy) instead of learning one; "
            "it acts on raw hidden states and encode uses --lambda.",
        ),
    ] = None,
    control: Annotated[
        ControlChoice | None,
        typer.Option(
            "--control",
            help="Make a control dictionary of --parent instead of learning one: random "
            "atoms (gaussian: Gaussian directions; sample-atoms: sample vectors) of the "
            "parent's size and preprocessing, lambda bisected until its mean L0 on the "
            "stored sample is within 2% of the parent's.",
        ),
    ] = None,
    parent: Annotated[
        int | None,
        typer.Option(
            "--parent",
            callback=_parent_check,
            help="The dictionary a --control is a control of (default: the newest that is "
            "not a control).",
        ),
    ] = None,
) -> None:
    """Learn one dictionary shared by all layers from the stored hidden-state sample.

    Several sizes or seeds (-m 512,1024 --seed 0,1) learn one dictionary per size and
    seed into the same file, each published when fitted, ready to encode and compare.
    --control KIND makes a control dictionary of --parent instead (one per --seed).
    """
    from factorscope.errors import InputError
    from factorscope.stages.learn import run_learn

    sizes: list[int] = n_factors  # type: ignore[assignment]  (the callback parsed it)
    seeds: list[int] = seed  # type: ignore[assignment]
    if control is not None or parent is not None:
        _learn_controls(ctx, db, control, parent, seeds, from_npy)
        return
    if from_npy is not None and len(sizes) * len(seeds) > 1:
        raise InputError("--from-npy imports one dictionary: give one -m and one --seed with it")
    for size in sizes:
        for one_seed in seeds:
            config = LearnConfig(
                n_factors=size,
                lambda1=lambda1,
                preprocessing=preprocessing,
                batch_size=batch_size,
                n_iter=n_iter,
                seed=one_seed,
                max_vectors=max_vectors,  # type: ignore[arg-type]  (the callback parsed it)
            )
            typer.echo(run_learn(db, config, from_npy=from_npy).line())


def _learn_controls(
    ctx: typer.Context,
    db: Path,
    kind: str | None,
    parent: int | None,
    seeds: list[int],
    from_npy: Path | None,
) -> None:
    """``learn --control KIND [--parent N]``: one control per seed; nothing written on an
    option that does not go with it."""
    from factorscope.errors import InputError
    from factorscope.stages.learn import ControlConfig, run_learn_control

    if kind is None:
        raise InputError("--parent names the parent of a control: give --control KIND with it")
    if from_npy is not None:
        raise InputError("--control makes a control dictionary; --from-npy imports one: give one")
    given = [
        p.opts[0] for p in ctx.command.params if p.name in _LEARNED_ONLY and _given(ctx, p.name)
    ]
    if given:
        raise InputError(
            f"--control takes the parent's size, lambda and preprocessing: drop {', '.join(given)}"
        )
    configs = [ControlConfig(kind=kind, parent_id=parent, seed=s) for s in seeds]
    for config in configs:
        typer.echo(run_learn_control(db, config).line())


# Over 80 lines: typer declares one annotated parameter per option; the body only builds the
# config and calls the stage.
@app.command()
def encode(
    db: DbOption = DEFAULT_DB,
    dictionary: Annotated[
        int | None,
        limited("dictionary_id", "--dictionary", help="Dictionary id (default: newest)."),
    ] = EncodeConfig.dictionary_id,
    backend: Annotated[
        BackendChoice, typer.Option(help="Lasso solver of the codes.")
    ] = EncodeConfig.backend,
    batch_size: Annotated[int, limited("batch_size", "--batch-size")] = EncodeConfig.batch_size,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    engine: Annotated[
        EngineChoice, typer.Option(help="Where the coding runs (all but local need --out).")
    ] = DEFAULT_ENGINE,
    shard: Annotated[
        str | None,
        typer.Option(help="Encode only shard i of n (e.g. 0/4) into --out; see `merge`."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Shard folder to write Parquet to, instead of the database."),
    ] = None,
    workers: Annotated[
        int, limited("workers", "--workers", help="Ray actors (--engine ray).")
    ] = ShardFolderRequest.workers,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS or local).")
    ] = ShardFolderRequest.ray_address,
    partial_k: Annotated[
        int, limited("partial_k", "--partial-k", help="Top rows per (factor, layer) a shard keeps.")
    ] = ShardFolderRequest.partial_k,
    dictionary_db: Annotated[
        Path | None,
        typer.Option(
            "--dictionary-db",
            help="Take the dictionary from this database (the merge-ingest one learn wrote "
            "to); needed when --db is a shard ingest.",
        ),
    ] = ShardFolderRequest.dictionary_db,
) -> None:
    """Code every stored token at every layer; resumable like ingest.

    With --shard or --engine ray the codes go to a shard folder (Parquet) instead of
    the database; `factorscope merge` builds the warehouse from the folders.
    """
    from factorscope.cli.checks import check_output_folder
    from factorscope.stages.encode import EncodeSummary
    from factorscope.stages.engines import run_encode_with

    config = EncodeConfig(
        dictionary_id=dictionary,
        backend=backend,
        batch_size=batch_size,
        device=device,
        threads=threads,
    )
    if out is not None:
        check_output_folder(out)
    summary = run_encode_with(
        engine,
        db,
        config,
        out=out,
        shard=shard,
        dictionary_db=dictionary_db,
        partial_k=partial_k,
        workers=workers,
        ray_address=ray_address,
    )
    typer.echo(summary.line())
    if isinstance(summary, EncodeSummary):
        _print_quality(summary.quality, summary.level_counts)


@app.command()
def merge(
    shard_dirs: Annotated[
        list[Path], typer.Argument(help="The shard folders (from encode --out), all n of them.")
    ],
    db: DbOption = DEFAULT_DB,
    attach: Annotated[
        bool,
        typer.Option(
            "--attach", help="Leave the codes in the shard folders (a view) instead of copying."
        ),
    ] = False,
) -> None:
    """Build the warehouse (replacing --db) from shard folders: same tables, views, summaries."""
    from factorscope.stages.merge import run_merge

    typer.echo(run_merge(db, shard_dirs, attach=attach).line())


@app.command("merge-ingest")
def merge_ingest(
    shard_dbs: Annotated[
        list[Path],
        typer.Argument(help="The shard databases (from ingest --shard i/n), all n of them."),
    ],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Join shard ingests into one run database (replacing --db) to learn on: same rows as
    one unsharded ingest (sentences, tokens, the hidden-state sample)."""
    from factorscope.stages.merge_ingest import run_merge_ingest

    typer.echo(run_merge_ingest(db, shard_dbs).line())


@app.command()
def pipeline(
    db: DbOption = DEFAULT_DB,
    config: Annotated[
        Path | None, typer.Option("--config", help="A TOML pipeline config (see configs/).")
    ] = None,
    corpus: Annotated[str | None, typer.Option(help="Override the config's corpus.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Run ingest -> learn -> encode (-> controls -> explain, see [evidence]) with one
    config; finished stages are not redone.

    Without --config the built-in defaults run (see `pipeline_config.describe`).
    """
    from factorscope.cli.checks import check_same_run
    from factorscope.progress import stderr_console
    from factorscope.stages.encode import EncodeSummary
    from factorscope.stages.pipeline import run_pipeline
    from factorscope.stages.pipeline_config import describe, load_pipeline_config

    settings = load_pipeline_config(config, corpus=corpus)
    check_same_run(db, settings.ingest, overwrite=overwrite)
    if config is None:
        stderr_console.print(
            f"pipeline: no --config given, running the built-in defaults ({describe(settings)}); "
            "give --config FILE (see configs/) to choose",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def report(summary) -> None:
        typer.echo(summary.line())
        if isinstance(summary, EncodeSummary):
            _print_quality(summary.quality, summary.level_counts)

    run_pipeline(db, settings, overwrite=overwrite, report=report)
