"""Spec alarms (docs/spc.md, "Alarm workflow: the pure core"): is a sample out of spec, and
the episode logic that raises one ``spec`` alarm per run of out-of-spec samples."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine._types import Severity
from engine.alarms._events import SpecViolationRaised

__all__ = ["SpecJudgement", "SpecWatch", "out_of_spec"]


def out_of_spec(values: Iterable[float], usl: float | None, lsl: float | None) -> bool | None:
    """True when a reading lies beyond ``usl`` or ``lsl`` (a reading exactly on a limit is
    within spec); None without spec limits. A one-sided spec judges its one side."""
    if usl is None:
        return None if lsl is None else any(v < lsl for v in values)
    if lsl is None:
        return any(v > usl for v in values)
    for v in values:  # noqa: SIM110  a loop, not a generator: every sample of every chart
        if v > usl or v < lsl:
            return True
    return False


def _worst(values: Iterable[float], usl: float | None, lsl: float | None) -> float:
    """The reading furthest beyond its limit (called only when one is beyond)."""
    best: tuple[float, float] | None = None
    for v in values:
        excess = max(
            v - usl if usl is not None else float("-inf"),
            lsl - v if lsl is not None else float("-inf"),
        )
        if best is None or excess > best[0]:
            best = (excess, v)
    assert best is not None
    return best[1]


@dataclass(frozen=True, slots=True)
class SpecJudgement:
    """What one sample told: ``out_of_spec`` for the ``sample`` message, and the alarm when
    this sample starts an episode (None otherwise)."""

    out_of_spec: bool | None
    raised: SpecViolationRaised | None


class SpecWatch:
    """One characteristic's spec alarm: raised on the first sample with a reading beyond a
    spec limit, re-armed once a sample is wholly within spec.

    ``in_episode`` is the whole state: pass what ``in_episode`` said before a restart (the
    bridge knows it from its last stored sample's ``out_of_spec``) so a restart neither
    raises the running episode's alarm again nor forgets it.
    """

    __slots__ = ("_in_episode", "characteristic_id", "lsl", "severity", "usl")

    def __init__(
        self,
        characteristic_id: int,
        usl: float | None,
        lsl: float | None,
        *,
        severity: Severity = Severity.CRITICAL,
        in_episode: bool = False,
    ) -> None:
        self.characteristic_id = characteristic_id
        self.usl = usl
        self.lsl = lsl
        self.severity = severity
        self._in_episode = in_episode

    @property
    def in_episode(self) -> bool:
        """True between an out-of-spec sample and the next sample wholly within spec."""
        return self._in_episode

    def judge(self, sample_seq: int, values: Iterable[float], timestamp: datetime) -> SpecJudgement:
        values = tuple(values)
        out = out_of_spec(values, self.usl, self.lsl)
        if not out:
            # within spec, or no spec limits at all (limits removed: the episode is over)
            self._in_episode = False
            return SpecJudgement(out, None)
        if self._in_episode:
            return SpecJudgement(True, None)
        self._in_episode = True
        worst = _worst(values, self.usl, self.lsl)
        raised = SpecViolationRaised(
            self.characteristic_id, sample_seq, self.severity, timestamp, self.usl, self.lsl, worst
        )
        return SpecJudgement(True, raised)
