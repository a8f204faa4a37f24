"""What each stage hands back for an order: small typed records, artifacts by path.

Each model carries a `stage` literal so that a `StageResult` can hold any of them and still be
parsed back from JSON into the right type.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reservation(_Output):
    item: str
    quantity: float
    unit: Literal["g", "ct", "pcs"]


class MaterialOutput(_Output):
    stage: Literal["material"] = "material"
    reservations: tuple[Reservation, ...]
    certificates_verified: tuple[str, ...]
    store: str


class DesignOutput(_Output):
    stage: Literal["design"] = "design"
    design_key: str
    triangles: int
    volume_mm3: float
    metal_weight_g: float
    jade_weight_g: float
    bounding_box_mm: tuple[float, float, float]
    mesh_path: str | None
    cache_hit: bool


class BenchBooking(_Output):
    """One bench's booking, in exact workshop minutes, so that it can be given back exactly."""

    bench: str
    start: float
    finish: float


class ProductionOutput(_Output):
    stage: Literal["production"] = "production"
    casting_bench: str
    setting_bench: str | None
    start_minute: float
    finish_minute: float
    labour_minutes: float
    metal_loss_g: float
    bookings: tuple[BenchBooking, ...]


class QualityOutput(_Output):
    stage: Literal["quality"] = "quality"
    verdict: Literal["pass", "fail"]
    standard_fineness: int | None
    measured_fineness: float | None
    size_deviation: float
    stone_grades_confirmed: int
    defects: tuple[str, ...]


class PackagingOutput(_Output):
    stage: Literal["packaging"] = "packaging"
    box: str
    certificate_serial: str
    certificate_path: str | None


class LogisticsOutput(_Output):
    stage: Literal["logistics"] = "logistics"
    carrier: str
    service: str
    zone: str
    tracking_number: str
    insured_value: Decimal
    insurance_premium: Decimal
    estimated_delivery: date


StageOutput = MaterialOutput | DesignOutput | ProductionOutput | QualityOutput | PackagingOutput | LogisticsOutput
