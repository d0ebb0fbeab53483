"""Control chart constants d2, d3, c4 and the factors derived from them, for n = 2..25.

d2, d3 and c4 are the values printed in the published tables (ASTM E2587, Montgomery's
Appendix VI): d2 and d3 to three decimals, c4 to four. The SPC conventions (docs/spc.md,
"Constants") name those tables, and their individuals chart uses the n = 2 entry literally
(MR-bar / 1.128), so every chart uses the same printed constants and an outside
implementation that types the table in agrees with ours to the last bit. Every other factor
is derived from them, as the conventions say:

    A2 = 3 / (d2 sqrt n)        D3 = max(0, 1 - 3 d3/d2)        D4 = 1 + 3 d3/d2
    A3 = 3 / (c4 sqrt n)        B3 = max(0, 1 - 3 sqrt(1-c4^2)/c4)  B4 = 1 + 3 sqrt(1-c4^2)/c4

(Derived from the rounded constants, a few factors differ from their own printed entries by
one or two units of the last printed decimal, e.g. D4(2) = 3.2686 against 3.267.)

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

MAX_SUBGROUP_SIZE = 25

# n -> (d2, d3, c4), as printed in the tables
_TABLE: dict[int, tuple[float, float, float]] = {
    2: (1.128, 0.853, 0.7979),
    3: (1.693, 0.888, 0.8862),
    4: (2.059, 0.880, 0.9213),
    5: (2.326, 0.864, 0.9400),
    6: (2.534, 0.848, 0.9515),
    7: (2.704, 0.833, 0.9594),
    8: (2.847, 0.820, 0.9650),
    9: (2.970, 0.808, 0.9693),
    10: (3.078, 0.797, 0.9727),
    11: (3.173, 0.787, 0.9754),
    12: (3.258, 0.778, 0.9776),
    13: (3.336, 0.770, 0.9794),
    14: (3.407, 0.763, 0.9810),
    15: (3.472, 0.756, 0.9823),
    16: (3.532, 0.750, 0.9835),
    17: (3.588, 0.744, 0.9845),
    18: (3.640, 0.739, 0.9854),
    19: (3.689, 0.734, 0.9862),
    20: (3.735, 0.729, 0.9869),
    21: (3.778, 0.724, 0.9876),
    22: (3.819, 0.720, 0.9882),
    23: (3.858, 0.716, 0.9887),
    24: (3.895, 0.712, 0.9892),
    25: (3.931, 0.708, 0.9896),
}

# The individuals chart follows the conventions literally (docs/spc.md): sigma = MR-bar / 1.128
# and the moving-range chart's UCL = 3.267 MR-bar (the rounded table values for n = 2).
MR_D2 = 1.128
MR_D4 = 3.267


@dataclass(frozen=True, slots=True)
class Factors:
    """Constants and chart factors for one subgroup size (``factors(n)``)."""

    d2: float
    d3: float
    c4: float
    A2: float
    A3: float
    B3: float
    B4: float
    D3: float
    D4: float


def c4(n: int) -> float:
    """c4 for subgroup size ``n`` (2..25), as printed in the tables."""
    if n not in _TABLE:
        raise ValueError(f"control chart factors exist for n = 2..25, got {n}")
    return _TABLE[n][2]


@cache
def factors(n: int) -> Factors:
    """The constants and factors for subgroup size ``n`` (2..25)."""
    if n not in _TABLE:
        raise ValueError(f"control chart factors exist for n = 2..25, got {n}")
    d2, d3, c = _TABLE[n]
    root_n = math.sqrt(n)
    spread = 3.0 * math.sqrt(1.0 - c * c) / c
    return Factors(
        d2=d2,
        d3=d3,
        c4=c,
        A2=3.0 / (d2 * root_n),
        A3=3.0 / (c * root_n),
        B3=max(0.0, 1.0 - spread),
        B4=1.0 + spread,
        D3=max(0.0, 1.0 - 3.0 * d3 / d2),
        D4=1.0 + 3.0 * d3 / d2,
    )
