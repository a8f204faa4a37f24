"""House styles and what they weigh: the proportions every stage reads the same way.

Design builds the exact mesh from these proportions; material verification must reserve metal
before that mesh exists (the stages run concurrently), so it reserves the closed-form volume of
the same proportions plus a casting margin. One table, so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from actors.models.catalog import METALS, ProductType, ring_inner_diameter_mm
from actors.models.order import JewelryOrder

CASTING_MARGIN = 0.15  # sprues and feeders that go back to the melt
JADE_SETTING_FRACTION = 0.25  # a jade piece's metal is only its setting
PRONG_RADIUS_MM, PRONG_HEIGHT_MM = 0.45, 4.0
HEAD_RADIUS_MM, HEAD_WIRE_MM = 1.6, 0.35
BAIL_RADIUS_MM, BAIL_WIRE_MM = 1.5, 0.5
STUD_POST_RADIUS_MM, STUD_POST_LENGTH_MM = 0.4, 10.0


@dataclass(frozen=True)
class StyleSpec:
    """Proportions of a house style, in millimetres."""

    width: float = 2.0  # band width or bar height; for pendants, width as a fraction of height
    thickness: float = 1.6
    prongs: int = 0
    wire: float = 0.0  # chain or hoop wire radius
    link: float = 0.0  # chain link inner radius


STYLES: dict[ProductType, dict[str, StyleSpec]] = {
    ProductType.RING: {
        "classic six-prong": StyleSpec(width=2.0, thickness=1.6, prongs=6),
        "four-prong solitaire": StyleSpec(width=1.8, thickness=1.6, prongs=4),
        "plain band": StyleSpec(width=4.0, thickness=1.8),
    },
    ProductType.BANGLE: {
        "retro round bar": StyleSpec(width=9.0, thickness=9.0),
        "flat band": StyleSpec(width=6.0, thickness=1.6),
        "slim round": StyleSpec(width=3.0, thickness=3.0),
    },
    ProductType.NECKLACE: {
        "minimal collarbone chain": StyleSpec(wire=0.25, link=1.0),
        "cable chain": StyleSpec(wire=0.4, link=1.5),
    },
    ProductType.PENDANT: {
        "teardrop": StyleSpec(width=0.6, thickness=1.0),
        "round medallion": StyleSpec(width=1.0, thickness=0.9),
    },
    ProductType.EARRINGS: {
        "hoop": StyleSpec(wire=0.7),
        "stud": StyleSpec(width=1.0, thickness=1.2),
    },
}

HOUSE_STYLE: dict[ProductType, str] = {
    ProductType.RING: "plain band",
    ProductType.BANGLE: "slim round",
    ProductType.NECKLACE: "cable chain",
    ProductType.PENDANT: "teardrop",
    ProductType.EARRINGS: "hoop",
}


def resolve_style(product: ProductType, style: str) -> str:
    """A named house style, or the product's house style for a style the workshop does not know."""
    return style if style in STYLES[product] else HOUSE_STYLE[product]


def chain_links(spec: StyleSpec, length_mm: float) -> int:
    return max(8, int(length_mm // (2.0 * spec.link)))


def _torus(major: float, radial: float, axial: float) -> float:
    return 2 * math.pi**2 * major * radial * axial


def nominal_volume_mm3(product: ProductType, style: str, size: float) -> float:
    """Closed-form volume of the piece the design stage meshes for these proportions."""
    spec = STYLES[product][resolve_style(product, style)]
    if product is ProductType.RING:
        inner = ring_inner_diameter_mm(size) / 2
        volume = _torus(inner + spec.thickness / 2, spec.thickness / 2, spec.width / 2)
        if spec.prongs:
            volume += spec.prongs * math.pi * PRONG_RADIUS_MM**2 * PRONG_HEIGHT_MM
            volume += _torus(HEAD_RADIUS_MM, HEAD_WIRE_MM, HEAD_WIRE_MM)
        return volume
    if product is ProductType.BANGLE:
        return _torus(size / 2 + spec.thickness / 2, spec.thickness / 2, spec.width / 2)
    if product is ProductType.NECKLACE:
        return chain_links(spec, size) * _torus(spec.link + spec.wire, spec.wire, spec.wire)
    if product is ProductType.PENDANT:
        half_width = size * spec.width / 2
        area = 0.75 * math.pi * half_width * size / 2 if spec.width < 1.0 else math.pi * half_width**2
        return area * spec.thickness + _torus(BAIL_RADIUS_MM, BAIL_WIRE_MM, BAIL_WIRE_MM)
    if spec.wire:  # a pair of hoops
        return 2 * _torus(size / 2, spec.wire, spec.wire)
    stud = math.pi * (size / 2) ** 2 * spec.thickness + math.pi * STUD_POST_RADIUS_MM**2 * STUD_POST_LENGTH_MM
    return 2 * stud


def metal_allowance_g(order: JewelryOrder) -> float:
    """Metal to reserve before casting: the nominal piece plus the casting margin, in grams."""
    if order.metal is None:
        return 0.0
    cm3 = nominal_volume_mm3(order.product_type, order.style, order.size) / 1000
    grams = cm3 * METALS[order.metal].density_g_cm3 * (1 + CASTING_MARGIN)
    if order.jade_grade is not None:
        grams *= JADE_SETTING_FRACTION
    return round(grams, 3)
