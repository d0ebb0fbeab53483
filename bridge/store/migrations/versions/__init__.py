"""The schema's revisions, numbered 0001, 0002, ...: each one's ``down_revision`` is the one
before it. 0001 is release 0.1.0's schema. Never edit a released revision: add the next."""
