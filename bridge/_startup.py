"""Process-wide tuning that only `openspc run` (and the benchmark, which runs it) asks for.

Both change the whole process, so neither happens as a side effect of building something:
:func:`bridge._cli.run.main` calls :func:`install_fast_paths` once before the loop starts and
hands :func:`freeze_startup_heap` to :func:`bridge.app.run_bridge` as ``started``. Tests, the
demo and anything else that embeds the bridge keep paho and the garbage collector as they are.
"""

from __future__ import annotations

import gc

from bridge import _paho_fast

__all__ = ["freeze_startup_heap", "install_fast_paths"]


def install_fast_paths() -> None:
    """paho's PUBLISH/PUBACK decoding without a ``Properties`` per packet, and one shared
    ``Condition`` for message infos (``bridge._paho_fast``: about 15 us per reading,
    docs/performance.md). Idempotent."""
    _paho_fast.install()


GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic GC's thresholds while the bridge runs (Python's defaults: 700, 10, 10)."""


def freeze_startup_heap() -> None:
    """Move what start-up made (configuration, engines, meta, modules) out of the cyclic GC's
    way: it lives as long as the bridge, and full passes over it paused the loop for 50-120 ms
    at a time (latency p99 at 2,000 readings/s 31-78 -> 20 ms; docs/performance.md).

    Then collect less often (:data:`GC_THRESHOLDS`): what the bridge frees is freed by its
    reference count at once; the cyclic collector only finds cycles, and with Python's
    defaults it ran about 130 times a second at 10,000 characteristics, its passes over the
    held publishes, inbox and histories taking 14 s of 35 s of the bridge's CPU and pausing
    the loop for up to 380 ms (docs/performance.md, "The garbage collector")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
