"""u chart: defects per unit c/units, limits u-bar +/- 3 sqrt(u-bar / units_i)."""

from engine.charts._attribute import RateFamily

FAMILY = RateFamily()
