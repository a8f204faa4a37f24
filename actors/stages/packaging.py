"""Packaging: a gift box from box stock, and a numbered certificate that is never reused.

Boxes are the shared workshop's stock, and serials come from the workshop's one counter (in
blocks, see actors/ledger/sql.py), so that no two replicas, restarts or machines ever issue the
same serial. A serial is never handed out again: a voided one is recorded as voided.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from actors.errors import BusinessFailure
from actors.ledger import Claim
from actors.models import (
    JewelryOrder,
    PackagingOutput,
    ProductType,
    StageName,
    StageOutput,
)
from actors.models.catalog import METALS
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig

BOXES: dict[ProductType, str] = {
    ProductType.RING: "velvet ring box",
    ProductType.BANGLE: "round bangle case",
    ProductType.NECKLACE: "necklace presentation case",
    ProductType.PENDANT: "pendant box",
    ProductType.EARRINGS: "earring box",
}


PRODUCT_OF_BOX = {box: product for product, box in BOXES.items()}
SERIALS = "certificate_serial"


class PackagingConfig(StageConfig):
    duration_s: float = Field(default=0.8, ge=0)
    box_stock: dict[ProductType, int] = Field(
        default_factory=lambda: {
            ProductType.RING: 4000,
            ProductType.BANGLE: 1500,
            ProductType.NECKLACE: 2500,
            ProductType.PENDANT: 2500,
            ProductType.EARRINGS: 2000,
        }
    )
    serial_prefix: str = Field(default="JF", pattern=r"^[A-Z]{1,4}$")
    write_certificates: bool = True


class Packaging(Stage[PackagingConfig]):
    name = StageName.PACKAGING

    def __init__(self, config: PackagingConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._issued = 0  # by this replica
        self._last_serial: str | None = None
        self._voided = 0
        self.resume()

    def initial_stock(self) -> dict[str, int]:
        return {_box_lot(product): count for product, count in self.config.box_stock.items()}

    def handle(self, order: JewelryOrder) -> PackagingOutput:
        product = order.product_type
        box = _box_lot(product)
        if self.workshop.shortages({box: 1}):
            raise BusinessFailure(f"out of stock: no {BOXES[product]} left in the workshop")
        serial = f"{self.config.serial_prefix}-{self.workshop.next_number(SERIALS):08d}"
        path = self.artifact_path("certificates", f"{serial}.txt") if self.config.write_certificates else None
        if path is not None:
            path.write_text(_certificate_text(serial, order), encoding="utf-8")
        self._issued += 1
        self._last_serial = serial
        return PackagingOutput(
            box=BOXES[product], certificate_serial=serial, certificate_path=str(path) if path else None
        )

    def claim(self, output: StageOutput) -> Claim:
        assert isinstance(output, PackagingOutput)
        return Claim(
            takes={_box_lot(PRODUCT_OF_BOX[output.box]): 1},
            numbers=((SERIALS, int(output.certificate_serial.rsplit("-", 1)[1])),),
        )

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, PackagingOutput)  # the base calls undo once, for a packed order
        self._voided += 1
        if output.certificate_path:
            path = Path(output.certificate_path)
            if path.exists():
                path.write_text(
                    "VOID: the order was not completed.\n" + path.read_text(encoding="utf-8"), encoding="utf-8"
                )
        return f"voided certificate {output.certificate_serial}; returned a {output.box}"

    def state(self) -> dict[str, Any]:
        left = self.store.available(self.initial_stock())
        return {
            "serials_issued": self._issued,
            "serials_voided": self._voided,
            "last_serial": self._last_serial,
            "workshop_boxes_left": {str(p): left[_box_lot(p)] for p in self.config.box_stock},
        }

    def checkpoint(self) -> dict[str, Any]:
        return {"issued": self._issued, "last_serial": self._last_serial, "voided": self._voided}

    def restore(self, saved: dict[str, Any]) -> None:
        self._issued = saved["issued"]
        self._last_serial = saved["last_serial"]
        self._voided = saved["voided"]


def _box_lot(product: ProductType) -> str:
    return f"box/{product}"


def _certificate_text(serial: str, order: JewelryOrder) -> str:
    material = METALS[order.metal].name if order.metal else ""
    if order.jade_grade:
        material = f"{material} with " if material else ""
        material += f"grade {order.jade_grade} jadeite"
    lines = [
        "CERTIFICATE OF AUTHENTICITY",
        f"Serial:       {serial}",
        f"Order:        {order.order_id}",
        f"Piece:        {order.product_type}, {order.style}, size {order.size:g}",
        f"Material:     {material}",
    ]
    for position, stone in enumerate(order.gemstones, start=1):
        report = f", report {stone.certificate}" if stone.certificate else ""
        lines.append(f"Stone {position}:      {stone.kind} {stone.carat:.2f} ct {stone.colour}/{stone.clarity}{report}")
    lines.append(f"Owner:        {order.customer}")
    return "\n".join(lines) + "\n"
