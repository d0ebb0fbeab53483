"""Alembic's INFO lines kept out of the bridge's log, set before Alembic is imported.

Alembic logs "setup plugin alembic.autogenerate..." seven times at INFO when it is imported,
and "Context impl SQLiteImpl" and more on every start; the store logs one line of its own
when the schema changes (bridge/store/_migrate.py). A program that set the ``alembic``
logger's level itself keeps its choice.
"""

from __future__ import annotations

import logging

__all__: list[str] = []

if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)
