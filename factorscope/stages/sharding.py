"""Which shard a sentence belongs to: a stable hash of its stable id, modulo n."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from factorscope.errors import InputError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(sentence_id: str, n: int) -> int:
    """The shard (0..n-1) of a sentence, from its stable ``sentence_id``.

    BLAKE2b of the id, so the assignment is the same on every machine, Python
    version and run (Python's own ``hash`` of a string is salted per process).
    """
    if n < 1:
        raise InputError(f"the number of shards must be at least 1, not {n}")
    digest = hashlib.blake2b(sentence_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (``--shard index/count``, 0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"--shard: the number of shards must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise InputError(
                f"--shard: the shard index must be in 0..{self.count - 1}, not {self.index}"
            )

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        match = _SHARD.match(text)
        if match is None:
            raise InputError(f"--shard must look like i/n (e.g. 0/4), not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, sentence_id: str) -> bool:
        return shard_of(sentence_id, self.count) == self.index

    def to_dict(self) -> dict:
        return {"index": self.index, "count": self.count}


def run_shard(run: dict) -> ShardSpec | None:
    """The shard a run database was ingested as (``ingest --shard``), or None for a whole run.

    Stored in the run's config JSON (``config["shard"]``), outside its ``config_hash``:
    every shard of one run has the hash of the whole run.
    """
    data = run["config"].get("shard")
    return None if data is None else ShardSpec(int(data["index"]), int(data["count"]))


def check_complete_shards(shards: list[tuple[int, int]], what: str) -> None:
    """``shards``: the (index, count) of each shard given; they must be shards 0..n-1 of
    one count n, once each. ``what`` names them in the one-line error ("shard folders")."""
    from factorscope.errors import InputError

    n = shards[0][1]
    indices = sorted(index for index, _ in shards)
    if any(count != n for _, count in shards) or indices != list(range(n)):
        missing = sorted(set(range(n)) - set(indices))
        dupes = sorted({i for i in indices if indices.count(i) > 1})
        raise InputError(
            f"the {what} must hold shards 0..{n - 1} of {n} once each"
            + (f"; missing {missing}" if missing else "")
            + (f"; repeated {dupes}" if dupes else "")
            + ("" if missing or dupes else "; they were made with different shard counts")
        )
