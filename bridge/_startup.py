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


def freeze_startup_heap() -> None:
    """Move what start-up made (configuration, engines, meta, modules) out of the cyclic GC's
    way: it lives as long as the bridge, and full passes over it paused the loop for 50-120 ms
    at a time (latency p99 at 2,000 readings/s 31-78 -> 20 ms; docs/performance.md)."""
    gc.collect()
    gc.freeze()
