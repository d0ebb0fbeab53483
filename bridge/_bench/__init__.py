"""`openspc bench`: relay, bridge, latency, engine and memory, measured in one run."""

from bridge._bench._run import BenchOptions, BenchReport, format_report, run_bench

__all__ = ["BenchOptions", "BenchReport", "format_report", "run_bench"]
