"""Stage 11, scale-down safety: remove a replica only when it is safe to.

1. Restart safety: no scale-down until a full evaluation window of history has been seen since
   the state was initialised (the operator started or restarted), so a half-empty history after a
   restart never reads as low load.
2. Never while the objective is violated or requests queue now.
3. N−1 must still hold: the model, at the forecast demand with the batch decided, must predict
   the objective with `target_margin + tolerance` to spare at the new count (a wider margin than
   scale-up uses — the hysteresis that stops flapping). The lowest safe count between the
   proposal and the current replicas is taken.
"""

from __future__ import annotations

from collections.abc import Callable

from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.evaluate import Evaluation
from sloscale.scaling.fmt import seconds
from sloscale.scaling.reasons import Reason, Stage


def scale_down_safety(
    desired: int,
    current: int,
    *,
    started_at: float,
    window_s: float,
    now: float,
    evaluation: Evaluation | None,
    safe_at: Callable[[int], bool],
) -> tuple[int, StageOutcome]:
    """The replicas that may be kept; `safe_at(n)` says whether n replicas would hold."""
    if desired >= current:
        return desired, StageOutcome(
            Stage.SCALE_DOWN_SAFETY, Reason.NOT_SCALING_DOWN, f"{current}→{desired}"
        )
    seen = now - started_at
    if seen < window_s:
        return current, StageOutcome(
            Stage.SCALE_DOWN_SAFETY,
            Reason.HISTORY_REFILLING,
            f"{current}→{desired} waits: {seconds(seen)} of history since start, a full {seconds(window_s)} window needed",
        )
    if evaluation is not None and (evaluation.met is False or evaluation.queueing):
        return current, StageOutcome(
            Stage.SCALE_DOWN_SAFETY,
            Reason.WOULD_VIOLATE_OBJECTIVE,
            f"{current}→{desired} refused: objective {evaluation.report.name} {seconds(evaluation.observed_s)}"
            f" not met or requests queueing ({evaluation.waiting:g} waiting)",
        )
    n = desired
    while n < current and not safe_at(n):
        n += 1
    if n == current:
        return current, StageOutcome(
            Stage.SCALE_DOWN_SAFETY,
            Reason.WOULD_VIOLATE_OBJECTIVE,
            f"{current}→{desired} refused: {current - 1} replicas would not hold the objective with margin",
        )
    return n, StageOutcome(
        Stage.SCALE_DOWN_SAFETY, Reason.SCALE_DOWN_SAFE, f"{current}→{n}: {n} replicas still hold"
    )
