"""The stages: each one reads the warehouse, runs the leaves, and publishes what it made.

A stage wires the leaf packages (:mod:`factorscope.ingest`, :mod:`factorscope.sparse`,
:mod:`factorscope.warehouse`), which know nothing of each other; the CLI, the app and
the report sit above and call a stage. docs/ARCHITECTURE.md draws the layers, and
``[tool.importlinter]`` in pyproject.toml checks them.

- :mod:`.ingest`: ``factorscope ingest``: corpus -> tokens -> hidden states -> the run
  database (one shard of the corpus with ``--shard i/n``).
- :mod:`.learn`: ``factorscope learn``: the dictionary, learned on a sample.
- :mod:`.encode`: ``factorscope encode``: every token at every layer coded, summaries built.
- :mod:`.encode_loop`: the one encode loop both encodes run (chunks -> codes and layer
  sums -> a sink: the run database's staging file, or a Parquet shard folder).
- :mod:`.pipeline_config`: the settings of the three, read from one TOML file.
- :mod:`.sharding`: ``--shard i/n`` and the stable sentence -> shard assignment.
- :mod:`.merge_ingest`: ``factorscope merge-ingest``: shard ingests -> one run
  database, row for row an unsharded ingest's, to learn the dictionary on.
- :mod:`.shard_encode`: encode one shard of the run's sentences into a shard folder
  (Parquet codes in a hive layout plus partial summaries), locally.
- :mod:`.ray_engine`: the same output from a Ray Data pipeline (``--engine ray``).
- :mod:`.merge`: ``factorscope merge``: shard folders -> one warehouse, whose top
  contexts, importance scores and levels equal those of a single local run.

Dictionary learning is not sharded: it stays on one node over a sample.
"""
