"""Packaging: a gift box from box stock, and a numbered certificate that is never reused.

Serials carry the replica's index, so that replicas of one pool can issue them independently
without ever colliding, and a counter that only moves forward: a serial is consumed only when
the order is packed, and never handed out again.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from actors.errors import BusinessFailure
from pathlib import Path

from actors.models import JewelryOrder, PackagingOutput, ProductType, StageName, StageOutput
from actors.models.catalog import METALS
from actors.stages.base import ReplicaContext, Stage, StageConfig

BOXES: dict[ProductType, str] = {
    ProductType.RING: "velvet ring box",
    ProductType.BANGLE: "round bangle case",
    ProductType.NECKLACE: "necklace presentation case",
    ProductType.PENDANT: "pendant box",
    ProductType.EARRINGS: "earring box",
}


PRODUCT_OF_BOX = {box: product for product, box in BOXES.items()}


class PackagingConfig(StageConfig):
    duration_s: float = Field(default=0.8, ge=0)
    box_stock: dict[ProductType, int] = Field(
        default_factory=lambda: {
            ProductType.RING: 4000, ProductType.BANGLE: 1500, ProductType.NECKLACE: 2500,
            ProductType.PENDANT: 2500, ProductType.EARRINGS: 2000,
        }
    )
    serial_prefix: str = Field(default="JF", pattern=r"^[A-Z]{1,4}$")
    write_certificates: bool = True


class Packaging(Stage[PackagingConfig]):
    name = StageName.PACKAGING

    def __init__(self, config: PackagingConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._initial_boxes = {p: int(context.share(n)) for p, n in config.box_stock.items()}
        self._boxes = dict(self._initial_boxes)
        self._next_serial = 1  # only moves forward: a voided serial is never issued again
        self._last_serial: str | None = None
        self._voided = 0
        self.resume()

    def handle(self, order: JewelryOrder) -> PackagingOutput:
        product = order.product_type
        if self._boxes.get(product, 0) <= 0:
            raise BusinessFailure(f"out of stock: no {BOXES[product]} left in {self.context.replica}")
        serial = f"{self.config.serial_prefix}-{self.context.index:03d}-{self._next_serial:08d}"
        path = self.artifact_path("certificates", f"{serial}.txt") if self.config.write_certificates else None
        if path is not None:
            path.write_text(_certificate_text(serial, order), encoding="utf-8")
        self._boxes[product] -= 1
        self._next_serial += 1
        self._last_serial = serial
        return PackagingOutput(box=BOXES[product], certificate_serial=serial, certificate_path=str(path) if path else None)

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, PackagingOutput)  # the base calls undo once, for a packed order
        product = PRODUCT_OF_BOX[output.box]
        self._boxes[product] += 1
        self._voided += 1
        if output.certificate_path:
            path = Path(output.certificate_path)
            if path.exists():
                path.write_text("VOID: the order was not completed.\n" + path.read_text(encoding="utf-8"),
                                encoding="utf-8")
        return f"voided certificate {output.certificate_serial}; returned a {BOXES[product]}"

    def state(self) -> dict[str, Any]:
        return {
            "serials_voided": self._voided,
            "boxes_initial": {str(k): v for k, v in self._initial_boxes.items()},
            "boxes_left": {str(k): v for k, v in self._boxes.items()},
            "serials_issued": self._next_serial - 1,
            "last_serial": self._last_serial,
        }

    def checkpoint(self) -> dict[str, Any]:
        return {"boxes": {str(k): v for k, v in self._boxes.items()}, "next_serial": self._next_serial,
                "last_serial": self._last_serial, "voided": self._voided}

    def restore(self, saved: dict[str, Any]) -> None:
        self._boxes = {ProductType(k): v for k, v in saved["boxes"].items()}
        self._next_serial = saved["next_serial"]
        self._last_serial = saved["last_serial"]
        self._voided = saved["voided"]


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
