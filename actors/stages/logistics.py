"""Logistics: insured shipping booked by declared value and destination, with a tracking number.

Tracking numbers follow the UPU S10 layout (two letters, eight digits, a check digit, the origin
country), so a mistyped number is caught by its check digit. The eight digits come from the
workshop's one counter, so no two replicas, restarts or machines issue the same number.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import Field

from actors.errors import NumbersExhausted
from actors.ledger import Claim
from actors.models import JewelryOrder, LogisticsOutput, StageName, StageOutput
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
S10_SERIALS = 100_000_000  # eight digits
TRACKING = "tracking"
NEAR_ASIA = frozenset({"HK", "MO", "TW", "JP", "KR", "SG", "MY", "TH", "VN", "PH", "ID"})
CENT = Decimal("0.01")


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an eight-digit serial."""
    total = sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


def is_valid_tracking_number(number: str) -> bool:
    digits = number[2:10]
    return len(number) == 13 and digits.isdigit() and number[10] == str(s10_check_digit(digits))


def add_business_days(start: date, days: int) -> date:
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


class LogisticsConfig(StageConfig):
    duration_s: float = Field(default=0.5, ge=0)
    origin_country: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    service_indicator: str = Field(default="EE", pattern=r"^[A-Z]{2}$")
    high_value_threshold: Decimal = Field(default=Decimal("100000"), gt=0)
    domestic_rate: Decimal = Decimal("0.003")
    international_rate: Decimal = Decimal("0.008")
    minimum_premium: Decimal = Decimal("20")
    workshop_lead_days: int = Field(default=5, ge=0, description="business days before dispatch")


class Logistics(Stage[LogisticsConfig]):
    name = StageName.LOGISTICS

    def __init__(self, config: LogisticsConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._issued = 0  # by this replica
        self._by_carrier: dict[str, int] = {}
        self._insured_total = Decimal(0)
        self._voided = 0  # a voided number is never issued again: the serial only moves forward
        self.resume()

    def handle(self, order: JewelryOrder) -> LogisticsOutput:
        zone, carrier, service, transit_days = self._route(order)
        rate = self.config.domestic_rate if zone == "domestic" else self.config.international_rate
        premium = max(self.config.minimum_premium, order.declared_value * rate).quantize(CENT, ROUND_HALF_UP)
        number = self.workshop.next_number(TRACKING)
        if number >= S10_SERIALS:
            raise NumbersExhausted(f"the workshop has used all {S10_SERIALS - 1} S10 tracking numbers")
        digits = f"{number:08d}"
        tracking = f"{self.config.service_indicator}{digits}{s10_check_digit(digits)}{self.config.origin_country}"
        eta = add_business_days(order.created_at.date(), self.config.workshop_lead_days + transit_days)

        self._issued += 1
        self._by_carrier[carrier] = self._by_carrier.get(carrier, 0) + 1
        self._insured_total += order.declared_value
        return LogisticsOutput(
            carrier=carrier,
            service=service,
            zone=zone,
            tracking_number=tracking,
            insured_value=order.declared_value,
            insurance_premium=premium,
            estimated_delivery=eta,
        )

    def claim(self, output: StageOutput) -> Claim:
        assert isinstance(output, LogisticsOutput)
        return Claim(numbers=((TRACKING, int(output.tracking_number[2:10])),))

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, LogisticsOutput)  # the base calls undo once, for a booked order
        self._voided += 1
        self._by_carrier[output.carrier] -= 1
        self._insured_total -= output.insured_value
        return f"voided waybill {output.tracking_number} ({output.carrier})"

    def state(self) -> dict[str, Any]:
        return {
            "tracking_numbers_issued": self._issued,
            "waybills_voided": self._voided,
            "by_carrier": dict(sorted(self._by_carrier.items())),
            "insured_total": str(self._insured_total),
        }

    def checkpoint(self) -> dict[str, Any]:
        return {
            "issued": self._issued,
            "by_carrier": self._by_carrier,
            "insured_total": str(self._insured_total),
            "voided": self._voided,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self._issued = saved["issued"]
        self._by_carrier = dict(saved["by_carrier"])
        self._insured_total = Decimal(saved["insured_total"])
        self._voided = saved["voided"]

    def _route(self, order: JewelryOrder) -> tuple[str, str, str, int]:
        high_value = order.declared_value > self.config.high_value_threshold
        country = order.destination.country
        if country == self.config.origin_country:
            return (
                ("domestic", "SF Express", "valuables, signature on delivery", 3)
                if high_value
                else ("domestic", "SF Express", "insured next-day", 1)
            )
        if high_value:
            return ("international", "Malca-Amit", "secure valuables", 6)
        if country in NEAR_ASIA:
            return ("asia", "EMS", "insured express", 4)
        return ("international", "DHL Express", "insured worldwide express", 5)
