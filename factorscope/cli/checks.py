"""Checks the commands run before they start work, so a mistake costs nothing.

Each raises a :class:`~factorscope.errors.FactorscopeError` whose one line says what
was given, what was expected, and the flag or command that fixes it.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

from factorscope.errors import InputError

# IngestConfig fields that change speed, not rows (left out of its config_hash).
_RUNTIME_ONLY = ("batch_size", "device", "threads")


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


def _show(value: Any) -> str:
    return "all" if value is None else repr(value)


def settings_differences(stored: dict, wanted: dict) -> list[str]:
    """``"name: stored -> wanted"`` for each ingest setting that differs (runtime ones aside)."""
    old, new = _flat(stored), _flat(wanted)
    names = sorted((set(old) | set(new)) - set(_RUNTIME_ONLY) - {"shard"})
    names = [n for n in names if not n.startswith("shard.")]
    return [
        f"{n.removeprefix('corpus.')} {_show(old.get(n))} -> {_show(new.get(n))}"
        for n in names
        if old.get(n) != new.get(n)
    ]


def check_same_run(db: Path, config: Any, *, overwrite: bool) -> None:
    """Refuse (naming the settings that differ) to resume a run with other settings.

    With ``overwrite`` nothing is checked or touched here: the ingest stage builds the
    new run in the staging copy and replaces the old file only when it publishes
    (:func:`factorscope.stages.ingest.run_ingest`), after the corpus and the model
    have been read, so a mistake or a kill leaves the old database as it was.
    """
    from factorscope.stages.ingest import existing_run

    if overwrite:
        return
    previous = existing_run(db)
    if previous is None or previous["config_hash"] == config.config_hash():
        return
    differences = settings_differences(previous.get("config") or {}, config.to_dict())
    what = "; ".join(differences) if differences else "the model or its revision"
    raise InputError(
        f"{db} already holds a run with other settings ({what}): give the stored settings "
        f"to resume it, add --overwrite to replace it, or use another --db"
    )


def upgrade_old_database(db: Path) -> None:
    """Migrate a file made by an older factorscope before a reader command opens it."""
    from factorscope.progress import stderr_console
    from factorscope.warehouse.publish import upgrade_schema

    upgraded = upgrade_schema(db)
    if upgraded:
        stderr_console.print(
            f"note: upgraded {db} from schema version {upgraded[0]} to {upgraded[1]} "
            "(once; its codes, summaries and labels are kept)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def check_readable_database(db: Path) -> dict:
    """Open ``db`` read-only before a server starts on it; returns what it holds."""
    from factorscope.warehouse.status import servable_contents

    upgrade_old_database(db)
    return servable_contents(db)


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once, so a taken port or a foreign address fails before serving."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"--host {host!r} is not a known host name or address") from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is already in use (another server?): "
                    "pick another with --port"
                ) from e
            if e.errno == errno.EACCES:
                raise InputError(
                    f"no permission to listen on port {port}: use a port above 1023 (--port)"
                ) from e
            raise InputError(
                f"cannot listen on {host}:{port}: {e.strerror} "
                "(--host must be an address of this machine, e.g. 127.0.0.1)"
            ) from e


def check_output_folder(out: Path, flag: str = "--out") -> None:
    """A folder we can create or write into, without creating anything yet."""
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{flag} {out} is a file, not a folder: give a folder path")
        if not os.access(out, os.W_OK):
            raise InputError(f"{flag} {out} is not writable: give a folder you can write to")
        return
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{flag} {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise InputError(f"{flag} {out}: cannot create it inside {ancestor} (not writable)")
