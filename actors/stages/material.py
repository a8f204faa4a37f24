"""Material verification: check certificates and reserve metal, stones and jade, once per order.

Stock is kept in integer milligrams, milli-carats and pieces so that conservation (initial =
left + reserved) holds exactly, with no float drift. Each replica is one store room holding its
share of the configured stock; a certificate identifies one physical stone and can be reserved
by only one order in that store.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from actors.errors import BusinessFailure
from actors.models import JewelryOrder, MaterialOutput, Reservation, StageName, StageOutput, StageResult
from actors.models.catalog import CLARITY_GRADES, GemKind, JadeGrade, Metal
from actors.models.order import Gemstone
from actors.models.styles import metal_allowance_g
from actors.stages.base import ReplicaContext, Stage, StageConfig

MILLI = 1000


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
            Metal.AU750: 60_000.0, Metal.AU585: 20_000.0, Metal.AU999: 20_000.0,
            Metal.PT950: 40_000.0, Metal.PT900: 10_000.0, Metal.AG925: 30_000.0,
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
        scale = config.stock_multiplier
        initial: dict[str, int] = {}
        for metal, grams in config.metal_stock_g.items():
            initial[f"metal/{metal}"] = int(context.share(round(grams * scale * MILLI)))
        for lot, carats in config.gem_stock_ct.items():
            initial[f"gem/{lot}"] = int(context.share(round(carats * scale * MILLI)))
        for grade, pieces in config.jade_pieces.items():
            initial[f"jade/{grade}"] = int(context.share(round(pieces * scale)))
        self._initial = dict(initial)
        self._stock = dict(initial)
        self._reserved = {key: 0 for key in initial}
        self._orders_reserved = 0
        # Per-order memo (grows with orders, so it is not checkpointed): rebuilt from the effects.
        self._certificate_holder: dict[str, str] = {}
        self.resume()

    def handle(self, order: JewelryOrder) -> MaterialOutput:
        needs = self._requirements(order)
        certificates = [g.certificate for g in order.gemstones if g.certificate is not None]
        for certificate in certificates:
            if certificate.lab not in self.config.accepted_labs:
                raise BusinessFailure(f"certificate {certificate}: laboratory not accepted by this workshop")
            holder = self._certificate_holder.get(str(certificate))
            if holder is not None:
                raise BusinessFailure(f"certificate {certificate} already reserved by order {holder}")
        shortages = [
            f"{key} needs {_human(key, qty)}, {_human(key, self._stock.get(key, 0))} left"
            for key, qty in needs.items()
            if self._stock.get(key, 0) < qty
        ]
        if shortages:
            raise BusinessFailure("out of stock: " + "; ".join(shortages))

        for key, qty in needs.items():
            self._stock[key] -= qty
            self._reserved[key] = self._reserved.get(key, 0) + qty
        self._orders_reserved += 1
        for certificate in certificates:
            self._certificate_holder[str(certificate)] = order.order_id
        return MaterialOutput(
            reservations=tuple(_reservation(key, qty) for key, qty in needs.items()),
            certificates_verified=tuple(str(c) for c in certificates),
            store=self.context.replica,
        )

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, MaterialOutput)  # the base calls undo once, for a reserved order
        needs = {r.item: _stored_quantity(r) for r in output.reservations}
        for key, qty in needs.items():
            self._stock[key] += qty
            self._reserved[key] -= qty
        self._orders_reserved -= 1
        freed = [c for c in output.certificates_verified if self._certificate_holder.get(c) == order_id]
        for certificate in freed:
            del self._certificate_holder[certificate]
        released = ", ".join(f"{key} {_human(key, qty)}" for key, qty in needs.items())
        return f"released {released}" + (f"; freed certificate {', '.join(freed)}" if freed else "")

    def state(self) -> dict[str, Any]:
        return {
            "unit": "mg for metal/*, milli-carat for gem/*, pieces for jade/*",
            "initial": dict(self._initial),
            "left": dict(self._stock),
            "reserved": {key: qty for key, qty in self._reserved.items() if qty},
            "orders_reserved": self._orders_reserved,
            "certificates_held": len(self._certificate_holder),
        }

    def checkpoint(self) -> dict[str, Any]:
        return {"left": self._stock, "reserved": self._reserved, "orders_reserved": self._orders_reserved}

    def restore(self, saved: dict[str, Any]) -> None:
        self._stock = dict(saved["left"])
        self._reserved = dict(saved["reserved"])
        self._orders_reserved = saved["orders_reserved"]
        self._certificate_holder = {}

    def remember(self, result: StageResult) -> None:
        assert isinstance(result.output, MaterialOutput)
        for certificate in result.output.certificates_verified:
            self._certificate_holder[certificate] = result.order_id

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


def _human(key: str, quantity: int) -> str:
    if key.startswith("metal/"):
        return f"{quantity / MILLI:.3f} g"
    if key.startswith("gem/"):
        return f"{quantity / MILLI:.3f} ct"
    return f"{quantity} pcs"


def _stored_quantity(reservation: Reservation) -> int:
    """A reservation's quantity back in the integer unit it was taken in (exact: it was int / 1000)."""
    if reservation.unit == "pcs":
        return int(reservation.quantity)
    return round(reservation.quantity * MILLI)


def _reservation(key: str, quantity: int) -> Reservation:
    if key.startswith("jade/"):
        return Reservation(item=key, quantity=quantity, unit="pcs")
    unit = "g" if key.startswith("metal/") else "ct"
    return Reservation(item=key, quantity=quantity / MILLI, unit=unit)
