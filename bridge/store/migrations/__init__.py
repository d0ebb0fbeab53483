"""Alembic's environment and the schema's revisions (docs/bridge.md, "Schema migrations").

Not imported by the bridge: Alembic loads ``env.py`` and ``versions/*.py`` from this folder,
found by ``bridge.store._migrate.script_location``.
"""
