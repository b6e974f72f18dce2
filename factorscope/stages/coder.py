"""The one way a stored dictionary becomes a coder.

Encode, shard encode, the Ray actors, live analysis (the Analyze page, probe, effects)
and compare all code vectors with a stored dictionary; each used to build its own
``SparseEncoder`` from the record, with its own hidden-size check. Here is the only
construction, so the same record gives the same solver with the same settings wherever
it codes (issue 24).
"""

from __future__ import annotations

from importlib import metadata

from factorscope.errors import WarehouseError
from factorscope.sparse import DictionaryLearner, SparseEncoder
from factorscope.warehouse import store

DEFAULT_BACKEND = "spams"


def load_learner(record: store.DictionaryRecord) -> DictionaryLearner:
    """Rebuild the fitted learner (atoms and preprocessing) from its stored record."""
    return DictionaryLearner.from_dict(record.params, record.components)


def coder_for(
    record: store.DictionaryRecord,
    *,
    backend: str | None = None,
    n_jobs: int = -1,
    hidden_size: int | None = None,
) -> SparseEncoder:
    """The coder of a stored dictionary: its atoms, preprocessing and lambda (the
    ``lambda1`` column), with the solver ``backend`` (default: the one its encode
    recorded, else SPAMS). ``hidden_size``: the model's, checked against the
    atoms' (a dictionary of another model is refused with one line)."""
    if hidden_size is not None:
        check_width(record, hidden_size)
    if backend is None and record.encode_solver:
        # the solver that wrote the stored codes, so live codes reproduce them
        backend = record.encode_solver.get("backend")
    # lambda is read from the dictionaries.lambda1 column, the value the app, the quality
    # table and the shard fingerprint show, not from the estimator's JSON copy of it
    return SparseEncoder(
        load_learner(record),
        lambda1=float(record.lambda1),
        backend=backend or DEFAULT_BACKEND,
        n_jobs=n_jobs,
    )


SOLVER_PACKAGES = {"spams": "spams-bin", "torch": "torch"}
"""The package whose version says which solver a backend ran (recorded per encode)."""


def solver_identity(backend: str | None) -> dict:
    """``{"backend", "version"}`` of the solver ``backend`` names, as an encode records it
    (``dictionaries.encode_solver``) and live analysis checks it."""
    name = backend or DEFAULT_BACKEND
    try:
        version = metadata.version(SOLVER_PACKAGES.get(name, name))
    except metadata.PackageNotFoundError:
        version = None
    return {"backend": name, "version": version}


def check_width(record: store.DictionaryRecord, hidden_size: int) -> None:
    """The dictionary's atoms have the model's hidden size."""
    width = record.components.shape[1]
    if width != int(hidden_size):
        raise WarehouseError(
            f"dictionary {record.dictionary_id} has {width}-dim atoms but the model's hidden "
            f"size is {hidden_size}"
        )
