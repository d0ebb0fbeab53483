"""np chart: the number defective d of a fixed n, limits n p-bar +/- 3 sqrt(n p-bar (1 - p-bar))."""

from engine.charts._attribute import NumberDefectiveFamily

FAMILY = NumberDefectiveFamily()
