"""The warehouse: the only part of factorscope that knows SQL.

Schema migrations live in ``schema/NNN_name.sql`` and views in ``views/*.sql``;
both are read with :mod:`importlib.resources`. Writers work on a private copy of the
database and publish it atomically (see :mod:`.publish`), so a server reading the
published file always sees the last complete data.
"""
