"""Alembic's environment and the schema's revisions (docs/bridge.md, "Schema migrations").

The bridge does not import this package: Alembic loads ``env.py`` and ``versions/*.py`` from
this folder, found by ``bridge.store._migrate.script_location``. ``__main__`` is the
developers' tool behind ``scripts/new-revision``.
"""
