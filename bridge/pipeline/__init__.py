"""The pipeline: inbound messages -> engines -> one transaction -> acks -> domain events.

Split by what it does (docs/architecture.md, "The path of a reading"):

- ``_inbox``: :class:`Inbound` deliveries (each with its ``.ack()``) and the bounded
  :class:`Inbox`;
- ``_acks``: :class:`AckTracker`, the connection generations, the packet ids taken but not
  acknowledged, and what is held;
- ``_router``: :class:`Router`, topic -> command / reading / registered source;
- ``_batcher``: :class:`Batcher`, parsing, dedupe and engine feeding into a :class:`Batch`;
- ``_unit_of_work``: :class:`BatchUnitOfWork`, the batch's rows in one transaction, an
  outage waited out, any other failure bisected to dead letters;
- ``_pipeline``: :class:`Pipeline`, the consumer that ties them together, and commands.
"""

from bridge.pipeline._acks import AckTracker
from bridge.pipeline._batcher import Batch, Batcher
from bridge.pipeline._inbox import Inbound, Inbox
from bridge.pipeline._model import CharacteristicRoute, InboundSource, Metrics, Submission
from bridge.pipeline._pipeline import Pipeline
from bridge.pipeline._router import Router
from bridge.pipeline._unit_of_work import BatchUnitOfWork, database_unavailable

__all__ = [
    "AckTracker",
    "Batch",
    "BatchUnitOfWork",
    "Batcher",
    "CharacteristicRoute",
    "Inbound",
    "InboundSource",
    "Inbox",
    "Metrics",
    "Pipeline",
    "Router",
    "Submission",
    "database_unavailable",
]
