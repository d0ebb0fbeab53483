"""Control chart constants d2, d3, c4 and the factors derived from them, for n = 2..25.

d2 and d3 (the mean and standard deviation of the relative range of n normal readings) have
no closed form; they are stored to seven decimals, the values the published tables (ASTM
E2587, Montgomery's Appendix VI) are rounded from. They were obtained by numerical
integration of the range distribution and agree with Harter's tables. c4 is computed exactly.
Every other factor is derived, so no rounded table value ever enters a computation:

    A2 = 3 / (d2 sqrt n)        D3 = max(0, 1 - 3 d3/d2)        D4 = 1 + 3 d3/d2
    A3 = 3 / (c4 sqrt n)        B3 = max(0, 1 - 3 sqrt(1-c4^2)/c4)  B4 = 1 + 3 sqrt(1-c4^2)/c4
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

MIN_SUBGROUP_SIZE = 1
MAX_SUBGROUP_SIZE = 25

# n -> (d2, d3)
_D2_D3: dict[int, tuple[float, float]] = {
    2: (1.1283792, 0.8525025),
    3: (1.6925688, 0.8883680),
    4: (2.0587507, 0.8798082),
    5: (2.3259289, 0.8640819),
    6: (2.5344127, 0.8480397),
    7: (2.7043568, 0.8332053),
    8: (2.8472006, 0.8198315),
    9: (2.9700263, 0.8078343),
    10: (3.0775055, 0.7970507),
    11: (3.1728727, 0.7873146),
    12: (3.2584553, 0.7784783),
    13: (3.3359804, 0.7704162),
    14: (3.4067631, 0.7630231),
    15: (3.4718269, 0.7562114),
    16: (3.5319828, 0.7499081),
    17: (3.5878840, 0.7440518),
    18: (3.6400638, 0.7385909),
    19: (3.6889630, 0.7334815),
    20: (3.7349501, 0.7286863),
    21: (3.7783358, 0.7241733),
    22: (3.8193846, 0.7199148),
    23: (3.8583234, 0.7158867),
    24: (3.8953481, 0.7120682),
    25: (3.9306292, 0.7084408),
}

# The individuals chart follows the contract literally: sigma = MR-bar / 1.128 and the
# moving-range chart's UCL = 3.267 MR-bar (the rounded table values for n = 2).
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
    """Exact c4 = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2), through log-gamma."""
    if n < 2:
        raise ValueError(f"c4 needs n >= 2, got {n}")
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


@cache
def factors(n: int) -> Factors:
    """The constants and factors for subgroup size ``n`` (2..25)."""
    if n not in _D2_D3:
        raise ValueError(f"control chart factors exist for n = 2..25, got {n}")
    d2, d3 = _D2_D3[n]
    c = c4(n)
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
