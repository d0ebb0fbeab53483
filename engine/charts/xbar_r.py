"""X-bar with a range chart: sigma = R-bar / d2 (docs/spc.md); the default for n = 2..10."""

from engine.charts._variables import RangeFamily

FAMILY = RangeFamily()
