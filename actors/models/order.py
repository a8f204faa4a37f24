"""The order as the workshop receives it, validated strictly at the edge of the system.

Everything downstream (six stages, the ledger of outcomes) trusts these invariants, so the
model rejects what a workshop could not act on: an unknown metal, a negative carat, a ring size
no bench can make, a certificate number in the wrong format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from actors.models.catalog import (
    CERTIFICATE_FORMATS,
    CLARITY_GRADES,
    DIAMOND_COLOURS,
    METAL_ALIASES,
    SIZE_CONVENTIONS,
    GemKind,
    JadeGrade,
    Metal,
    Priority,
    ProductType,
)
from actors.models.wire import JsonPickled

ORDER_ID_PATTERN = r"^J\d{7,12}$"


def _one_of(value: str, known: Iterable[str], what: str) -> str:
    if value not in known:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(known)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Certificate(_Strict):
    """A grading report that identifies one physical stone."""

    lab: str
    number: str

    @field_validator("lab")
    @classmethod
    def _known_lab(cls, value: str) -> str:
        return _one_of(value, CERTIFICATE_FORMATS, "laboratory")

    @field_validator("number")
    @classmethod
    def _number_matches_lab_format(cls, value: str, info: ValidationInfo) -> str:
        pattern = CERTIFICATE_FORMATS.get(info.data.get("lab", ""))
        if pattern and not re.match(pattern, value):
            raise ValueError(f"{info.data['lab']} report number {value!r} does not match {pattern}")
        return value

    def __str__(self) -> str:
        return f"{self.lab} {self.number}"


class Gemstone(_Strict):
    kind: GemKind
    carat: Annotated[float, Field(gt=0, le=50)]
    colour: str = Field(min_length=1, max_length=12)
    clarity: str
    certificate: Certificate | None = Field(default=None, validate_default=True)

    @field_validator("colour")
    @classmethod
    def _diamond_colour(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("kind") is GemKind.DIAMOND and value not in DIAMOND_COLOURS:
            raise ValueError(f"diamond colour {value!r} must be a GIA letter D-Z")
        return value

    @field_validator("clarity")
    @classmethod
    def _known_clarity(cls, value: str) -> str:
        return _one_of(value, CLARITY_GRADES, "clarity")

    @field_validator("certificate")
    @classmethod
    def _large_diamonds_certified(cls, value: Certificate | None, info: ValidationInfo) -> Certificate | None:
        large = info.data.get("kind") is GemKind.DIAMOND and info.data.get("carat", 0) >= 0.3
        if large and value is None:
            raise ValueError("a diamond of 0.30 ct or more needs a grading certificate")
        return value


class Destination(_Strict):
    city: str = Field(min_length=1, max_length=80)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    postal_code: str | None = Field(default=None, max_length=16)


class JewelryOrder(JsonPickled, _Strict):
    """One customer order; `size` is read by the product type's convention (see catalog)."""

    order_id: str = Field(pattern=ORDER_ID_PATTERN)
    product_type: ProductType
    metal: Metal | None = None
    jade_grade: JadeGrade | None = Field(default=None, validate_default=True)
    gemstones: tuple[Gemstone, ...] = ()
    style: str = Field(min_length=1, max_length=80)
    size: Annotated[float, Field(gt=0)]
    customer: str = Field(min_length=1, max_length=120)
    destination: Destination
    declared_value: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    priority: Priority = Priority.NORMAL
    created_at: datetime
    not_before: datetime | None = Field(
        default=None, description="scheduled: not started before this time (RFC 3339, with a timezone)"
    )
    admitted_at: datetime | None = Field(
        default=None, description="set by the system when a scheduled order is admitted; not taken on input"
    )

    @field_validator("metal", mode="before")
    @classmethod
    def _metal_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            return METAL_ALIASES.get(value.strip().lower(), value.strip().upper())
        return value

    @field_validator("jade_grade")
    @classmethod
    def _has_material(cls, value: JadeGrade | None, info: ValidationInfo) -> JadeGrade | None:
        if value is None and info.data.get("metal") is None and "metal" in info.data:
            raise ValueError("an order needs a metal, a jade grade, or both")
        return value

    @field_validator("gemstones")
    @classmethod
    def _one_stone_per_certificate(cls, value: tuple[Gemstone, ...]) -> tuple[Gemstone, ...]:
        certificates = [str(g.certificate) for g in value if g.certificate]
        if len(certificates) != len(set(certificates)):
            raise ValueError("the same certificate appears on two stones of this order")
        return value

    @field_validator("size")
    @classmethod
    def _size_the_workshop_makes(cls, value: float, info: ValidationInfo) -> float:
        product = info.data.get("product_type")
        if product is None:
            return value
        convention = SIZE_CONVENTIONS[product]
        if not convention.minimum <= value <= convention.maximum:
            raise ValueError(
                f"{value} is out of range for a {product}: "
                f"{convention.meaning} between {convention.minimum:g} and {convention.maximum:g}"
            )
        return value

    @field_validator("created_at", "not_before", "admitted_at")
    @classmethod
    def _timezone_aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{info.field_name} needs a timezone (e.g. 2025-01-15T10:00:00+08:00)")
        return value

    @field_validator("admitted_at")
    @classmethod
    def _admitted_only_when_scheduled(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("not_before") is None:
            raise ValueError("only a scheduled order (not_before) is admitted by the system; leave admitted_at out")
        return value

    @property
    def due_ts(self) -> float | None:
        """`not_before` in epoch seconds, as the ledger keeps it."""
        return self.not_before.timestamp() if self.not_before is not None else None
