"""factorscope: transformer factors of every token at every layer, in DuckDB.

The import package is split across the repository's top-level folders
(``ingest/``, ``sparse/``, ``warehouse/``, ``dash_app/``) by ``pyproject.toml``;
nothing here loads a model or opens a database at import time.
"""

__version__ = "0.1.0"
