"""Quality inspection: fineness against the hallmark standard, stones against their certificates,
workmanship against tolerance.

Measurements are simulated, but deterministically per order id (a seeded hash, never Python's
per-process `hash`), so that a retried or replayed inspection reaches the same verdict on any
replica. A configurable share of orders carries a defect of one of the three kinds.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from pydantic import Field

from actors.errors import BusinessFailure
from actors.models import JewelryOrder, QualityOutput, StageName
from actors.models.catalog import CLARITY_GRADES, METALS
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig


class QualityConfig(StageConfig):
    duration_s: float = Field(default=1.0, ge=0)
    defect_rate: float = Field(default=0.0, ge=0, le=1, description="share of orders with a defect")
    seed: int = 2025
    size_tolerance: float = Field(default=0.25, gt=0, description="allowed deviation in the size's unit")


class QualityInspection(Stage[QualityConfig]):
    name = StageName.QUALITY

    def __init__(self, config: QualityConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._by_material: dict[str, dict[str, int]] = {}
        self.resume()

    def handle(self, order: JewelryOrder) -> QualityOutput:
        rng = random.Random(hashlib.sha256(f"{self.config.seed}:{order.order_id}".encode()).digest())
        defect_kind = None
        if rng.random() < self.config.defect_rate:
            kinds = ["workmanship"] + (["fineness"] if order.metal else []) + (["stone"] if order.gemstones else [])
            defect_kind = rng.choice(kinds)

        defects: list[str] = []
        standard = measured = None
        if order.metal is not None:
            standard = METALS[order.metal].fineness_permille
            shift = -rng.uniform(1.0, 15.0) if defect_kind == "fineness" else rng.uniform(0.2, 3.0)
            measured = round(standard + shift, 1)
            if measured < standard:
                defects.append(f"fineness {measured}‰ below the {order.metal} standard of {standard}‰")

        confirmed = 0
        for position, stone in enumerate(order.gemstones, start=1):
            certified = CLARITY_GRADES.index(stone.clarity)
            observed = min(certified + 1, len(CLARITY_GRADES) - 1) if defect_kind == "stone" else certified
            if observed != certified:
                source = f"certificate {stone.certificate}" if stone.certificate else "the order"
                defects.append(f"stone {position} graded {CLARITY_GRADES[observed]}, {source} says {stone.clarity}")
                defect_kind = None  # one downgraded stone is enough
            else:
                confirmed += 1

        tolerance = self.config.size_tolerance
        deviation = (
            rng.uniform(1.2, 2.0) * tolerance if defect_kind == "workmanship" else rng.uniform(-0.6, 0.6) * tolerance
        )
        if abs(deviation) > tolerance:
            defects.append(f"size off by {deviation:+.2f} (tolerance ±{tolerance})")

        verdict = "fail" if defects else "pass"
        material = str(order.metal) if order.metal else f"jade-{order.jade_grade}"
        stats = self._by_material.setdefault(material, {"pass": 0, "fail": 0})
        stats[verdict] += 1
        output = QualityOutput(
            verdict=verdict,
            standard_fineness=standard,
            measured_fineness=measured,
            size_deviation=round(deviation, 3),
            stone_grades_confirmed=confirmed,
            defects=tuple(defects),
        )
        if defects:
            raise BusinessFailure("QC rejected: " + "; ".join(defects), output=output)
        return output

    def state(self) -> dict[str, Any]:
        return {"by_material": {k: dict(v) for k, v in sorted(self._by_material.items())}}

    def checkpoint(self) -> dict[str, Any]:
        return {"by_material": self._by_material}

    def restore(self, saved: dict[str, Any]) -> None:
        self._by_material = {k: dict(v) for k, v in saved["by_material"].items()}
