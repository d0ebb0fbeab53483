"""Process-wide tuning that only `openspc run` (and the benchmark, which runs it) asks for.

Both change the whole process, so neither happens as a side effect of building something:
:func:`bridge._cli.run.main` calls :func:`install_fast_paths` once before the loop starts and
hands :func:`freeze_startup_heap` to :func:`bridge.app.run_bridge` as ``started``. Tests, the
demo and anything else that embeds the bridge keep paho and the garbage collector as they are.
"""

from __future__ import annotations

import gc

from bridge import _paho_fast

__all__ = ["freeze_startup_heap", "install_fast_paths", "return_free_heap"]


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
    at a time (latency p99 at 2,000 readings/s 31-78 -> 20 ms; docs/performance.md). Then
    give the C heap's free pages back (:func:`return_free_heap`).

    It also collects less often (:data:`GC_THRESHOLDS`): what the bridge frees is freed by its
    reference count at once; the cyclic collector only finds cycles, and with Python's
    defaults it ran about 130 times a second at 10,000 characteristics, its passes over the
    held publishes, inbox and histories taking 14 s of 35 s of the bridge's CPU and pausing
    the loop for up to 380 ms (docs/performance.md, "The garbage collector")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return_free_heap()


def return_free_heap() -> bool:
    """glibc's ``malloc_trim(0)``: the pages that start-up's passing peaks left free inside
    the C heap (the configuration's parse, 40,000 retained messages on their way out) go
    back to the system instead of counting in the bridge's RSS for good (10,000
    characteristics: about 10 MB; docs/performance.md, "Memory at start-up"). Nothing moves:
    only whole free pages are released. False where the C library has no ``malloc_trim``
    (musl, macOS): nothing done."""
    import ctypes  # only here: `openspc run` once, after start-up

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
