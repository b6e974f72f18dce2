"""The run's model and its active dictionary, for text that is not in the run.

:class:`RunCoder` applies exactly the steps `encode` applies (the run's tokenizer
settings, its model, the dictionary's stored preprocessing and solver), so a sentence
of the corpus gets the codes stored for it. The app's live analysis
(:class:`factorscope.analyzer.LiveAnalyzer`) and `factorscope probe` are built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factorscope.errors import WarehouseError
from factorscope.ingest.model import LoadedModel
from factorscope.sparse import SparseEncoder
from factorscope.stages.coder import coder_for
from factorscope.stages.encode_loop import EncodeConfig, load_run_model
from factorscope.warehouse import queries, store


@dataclass
class RunCoder:
    loaded: LoadedModel
    encoder: SparseEncoder
    dictionary_id: int
    max_length: int
    keep_special: bool

    @classmethod
    def from_connection(
        cls,
        con: Any,
        *,
        dictionary_id: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        require_encoded: bool = False,
    ) -> RunCoder:
        """The run of ``con`` (any connection on a factorscope database) and
        ``dictionary_id``, by default the dictionary the public views show (the last
        encoded one, not a newer one still unencoded; the newest one when none is
        encoded yet, unless ``require_encoded``)."""
        run = store.require_run(con)
        if dictionary_id is None:
            if require_encoded and not queries.encoded_dictionaries(con):
                raise WarehouseError(
                    "this database holds no encoded dictionary (run `factorscope encode` first)"
                )
            dictionary_id = queries.active_dictionary_id(con)
        record = store.load_dictionary(con, dictionary_id)
        loaded = load_run_model(run, EncodeConfig(device=device, threads=threads))
        return cls(
            loaded=loaded,
            encoder=coder_for(record, n_jobs=1, hidden_size=loaded.hidden_size),
            dictionary_id=record.dictionary_id,
            max_length=int(run["config"]["max_length"]),
            keep_special=bool(run["config"]["keep_special"]),
        )
