"""X-bar with an S chart: sigma = S-bar / c4 (docs/spc.md); the default for n = 11..25."""

from engine.charts._variables import StdDevFamily

FAMILY = StdDevFamily()
