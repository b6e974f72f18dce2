"""Scale-out: sharded encode to Parquet, a Ray Data engine, and the merge into one warehouse.

- :mod:`.sharding`: ``--shard i/n`` and the stable sentence -> shard assignment
  (``ingest --shard i/n`` stores one shard of the corpus; see
  :func:`factorscope.ingest.pipeline.run_ingest`).
- :mod:`.merge_ingest`: ``factorscope merge-ingest``: shard ingests -> one run
  database, row for row an unsharded ingest's, to learn the dictionary on.
- :mod:`.shard_encode`: encode one shard of the run's sentences into a shard folder
  (Parquet codes in a hive layout plus partial summaries), locally.
- :mod:`.ray_engine`: the same output from a Ray Data pipeline (``--engine ray``).
- :mod:`.merge`: ``factorscope merge``: shard folders -> one warehouse, whose top
  contexts, importance scores and levels equal those of a single local run.

Dictionary learning is not sharded: it stays on one node over a sample.
"""
