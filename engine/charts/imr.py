"""Individuals (n = 1) with a moving-range chart: sigma = MR-bar / 1.128 (docs/spc.md)."""

from engine.charts._variables import IndividualsFamily

FAMILY = IndividualsFamily()
