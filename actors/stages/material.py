"""Material verification: check certificates and reserve metal, stones and jade, once per order.

Stock is kept in integer milligrams, milli-carats and pieces so that conservation (stocked =
left + reserved) holds exactly, with no float drift. Every replica works in the one store room,
the shared workshop in the ledger: a reservation is a claim on it, committed with the effect, and
a certificate identifies one physical stone that only one live order can hold anywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from actors.errors import BusinessFailure
from actors.ledger import Claim
from actors.models import (
    JewelryOrder,
    MaterialOutput,
    Reservation,
    StageName,
    StageOutput,
)
from actors.models.catalog import CLARITY_GRADES, GemKind, JadeGrade, Metal
from actors.models.order import Certificate, Gemstone
from actors.models.styles import metal_allowance_g
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig
from actors.stages.stock_units import MILLI, human, unit_of


def gem_lot(stone: Gemstone) -> str:
    """Stones are stocked in lots: diamonds by colour and clarity band, other gems by kind."""
    if stone.kind is not GemKind.DIAMOND:
        return f"{stone.kind}"
    colour = "D-F" if stone.colour <= "F" else "G-J" if stone.colour <= "J" else "K-Z"
    rank = CLARITY_GRADES.index(stone.clarity)
    clarity = "FL-VVS" if rank <= 3 else "VS" if rank <= 5 else "SI-I"
    return f"diamond/{colour}/{clarity}"


def _default_gem_lots() -> dict[str, float]:
    lots = {f"diamond/{c}/{q}": 250.0 for c in ("D-F", "G-J", "K-Z") for q in ("FL-VVS", "VS", "SI-I")}
    lots.update({str(kind): 150.0 for kind in GemKind if kind is not GemKind.DIAMOND})
    return lots


class MaterialConfig(StageConfig):
    duration_s: float = Field(default=1.0, ge=0)
    metal_stock_g: dict[Metal, float] = Field(
        default_factory=lambda: {
            Metal.AU750: 60_000.0,
            Metal.AU585: 20_000.0,
            Metal.AU999: 20_000.0,
            Metal.PT950: 40_000.0,
            Metal.PT900: 10_000.0,
            Metal.AG925: 30_000.0,
        }
    )
    gem_stock_ct: dict[str, float] = Field(default_factory=_default_gem_lots)
    jade_pieces: dict[JadeGrade, int] = Field(
        default_factory=lambda: {JadeGrade.A: 600, JadeGrade.B: 200, JadeGrade.C: 100}
    )
    stock_multiplier: float = Field(default=1.0, gt=0, description="scales every stock figure")
    accepted_labs: frozenset[str] = frozenset({"GIA", "IGI", "HRD", "NGTC"})


class MaterialVerification(Stage[MaterialConfig]):
    name = StageName.MATERIAL

    def __init__(self, config: MaterialConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._orders_reserved = 0  # by this replica; the stock itself is the workshop's
        self.resume()

    def initial_stock(self) -> dict[str, int]:
        scale = self.config.stock_multiplier
        stock = {f"metal/{metal}": round(grams * scale * MILLI) for metal, grams in self.config.metal_stock_g.items()}
        stock.update({f"gem/{lot}": round(carats * scale * MILLI) for lot, carats in self.config.gem_stock_ct.items()})
        stock.update({f"jade/{grade}": round(pieces * scale) for grade, pieces in self.config.jade_pieces.items()})
        return stock

    def certificates(self, order: JewelryOrder) -> list[str]:
        return [str(certificate) for certificate in _certified(order)]

    def handle(self, order: JewelryOrder) -> MaterialOutput:
        needs = self._requirements(order)
        certificates = _certified(order)
        for certificate in certificates:
            if certificate.lab not in self.config.accepted_labs:
                raise BusinessFailure(f"certificate {certificate}: laboratory not accepted by this workshop")
            holder = self.workshop.holder(str(certificate))
            if holder is not None and holder != order.order_id:
                raise BusinessFailure(f"certificate {certificate} already reserved by order {holder}")
        short = self.workshop.shortages(needs)
        shortages = [f"{key} needs {human(key, needs[key])}, {human(key, left)} left" for key, left in short.items()]
        if shortages:
            raise BusinessFailure("out of stock: " + "; ".join(shortages))
        self._orders_reserved += 1
        return MaterialOutput(
            reservations=tuple(_reservation(key, qty) for key, qty in needs.items()),
            certificates_verified=tuple(str(c) for c in certificates),
            store=self.context.replica,
        )

    def claim(self, output: StageOutput) -> Claim:
        assert isinstance(output, MaterialOutput)
        return Claim(
            takes={r.item: _stored_quantity(r) for r in output.reservations}, holds=output.certificates_verified
        )

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, MaterialOutput)  # the base calls undo once, for a reserved order
        self._orders_reserved -= 1
        released = ", ".join(f"{r.item} {human(r.item, _stored_quantity(r))}" for r in output.reservations)
        freed = output.certificates_verified
        return f"released {released}" + (f"; freed certificate {', '.join(freed)}" if freed else "")

    def state(self) -> dict[str, Any]:
        return {
            "unit": "mg for metal/*, milli-carat for gem/*, pieces for jade/*",
            "orders_reserved": self._orders_reserved,
            "workshop_left": self.store.available(self.initial_stock()),
        }

    def checkpoint(self) -> dict[str, Any]:
        return {"orders_reserved": self._orders_reserved}

    def restore(self, saved: dict[str, Any]) -> None:
        self._orders_reserved = saved["orders_reserved"]

    @staticmethod
    def _requirements(order: JewelryOrder) -> dict[str, int]:
        needs: dict[str, int] = {}
        if order.metal is not None:
            needs[f"metal/{order.metal}"] = round(metal_allowance_g(order) * MILLI)
        if order.jade_grade is not None:
            needs[f"jade/{order.jade_grade}"] = 1
        for stone in order.gemstones:
            key = f"gem/{gem_lot(stone)}"
            needs[key] = needs.get(key, 0) + round(stone.carat * MILLI)
        return needs


def _stored_quantity(reservation: Reservation) -> int:
    """A reservation's quantity back in the integer unit it was taken in (exact: it was int / 1000)."""
    if reservation.unit == "pcs":
        return int(reservation.quantity)
    return round(reservation.quantity * MILLI)


def _reservation(key: str, quantity: int) -> Reservation:
    unit = unit_of(key)
    return Reservation(item=key, quantity=quantity if unit == "pcs" else quantity / MILLI, unit=unit)


def _certified(order: JewelryOrder) -> list[Certificate]:
    """The certificates of the order's certified stones."""
    return [g.certificate for g in order.gemstones if g.certificate is not None]
