"""c chart: the count of defects c, limits c-bar +/- 3 sqrt(c-bar)."""

from engine.charts._attribute import CountFamily

FAMILY = CountFamily()
