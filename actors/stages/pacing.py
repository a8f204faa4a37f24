"""The simulated pacing of a stage replica: each order takes the stage's duration x time_scale, its
own work inside that time, so a replica handles exactly 1 / (duration x time_scale) orders per
second, the rate the theoretical limit assumes.

A batch's cadence starts now; but a call that waited in the replica's queue behind the last one
picks the cadence up where that batch's ended, at most one order's time ago. The last batch's
commit and the hand-over to this call are then part of this batch's first order's time, as an
order's own work is part of its own, and a replica with work waiting keeps its rate. (Without it,
each batch's commit and hand-over came on top: a few per cent of a saturated bottleneck's rate.)

Whether a call waited is told by the replica's own clock, not by its caller: a call queued behind
another starts as soon as that one returns, while one sent to an idle replica arrives a round trip
later. Taken for a queued one, such a call's first order would be credited at most the last
commit and `HANDOVER_S`, and never more than one order's time.
"""

from __future__ import annotations

# A call that starts within this long of the last call's return was waiting in the queue for it.
HANDOVER_S = 0.001


class Cadence:
    """When each order of a batch is due, on the replica's monotonic clock."""

    def __init__(self) -> None:
        self._end: float | None = None  # when the last batch's last order was due
        self._returned_at: float | None = None  # when the last call returned

    def start(self, now: float, per_order_s: float, first_try: bool = True) -> float:
        """Where a batch's cadence starts (a batch decided again after a refusal starts now)."""
        queued = (
            first_try
            and self._end is not None
            and self._returned_at is not None
            and now - self._returned_at <= HANDOVER_S
        )
        if not queued or self._end is None:
            return now
        return max(self._end, now - per_order_s)

    @staticmethod
    def due_after(due: float, now: float, per_order_s: float) -> float:
        """When the next order is due: one order's time after the last, or now if that is past (a
        sleep that overshot by a fraction of a millisecond is made up by the next order's wait,
        instead of adding up over the batch)."""
        return max(due + per_order_s, now)

    def ended(self, due: float) -> None:
        """The batch committed; its last order was due at `due`."""
        self._end = due

    def returned(self, now: float) -> None:
        """The call is about to return."""
        self._returned_at = now
