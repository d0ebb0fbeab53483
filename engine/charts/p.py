"""p chart: the proportion defective d/n, limits p-bar +/- 3 sqrt(p-bar (1 - p-bar) / n_i)."""

from engine.charts._attribute import ProportionFamily

FAMILY = ProportionFamily()
