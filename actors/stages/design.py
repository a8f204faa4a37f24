"""Design: a parametric 3D model of the piece, its volume and weight, cached by (type, style, size).

Named styles carry their proportions (band width, wire gauge, prong count); an unknown style
falls back to the product's house style rather than failing the order, and the design key
records which proportions were used. Meshes are written once per design as binary STL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from actors.errors import BusinessFailure
from actors.models import DesignOutput, JewelryOrder, ProductType, StageName
from actors.models.catalog import JADE_DENSITY_G_CM3, METALS, ring_inner_diameter_mm
from actors.models.styles import (
    BAIL_RADIUS_MM,
    BAIL_WIRE_MM,
    HEAD_RADIUS_MM,
    HEAD_WIRE_MM,
    JADE_SETTING_FRACTION,
    PRONG_HEIGHT_MM,
    PRONG_RADIUS_MM,
    STUD_POST_LENGTH_MM,
    STUD_POST_RADIUS_MM,
    STYLES,
    StyleSpec,
    chain_links,
    resolve_style,
)
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig
from actors.stages.mesh import Mesh, cylinder, merge, prism, rotation_from_axes, torus


class DesignConfig(StageConfig):
    duration_s: float = Field(default=1.5, ge=0)
    mesh_segments: int = Field(default=48, ge=8, le=4096, description="facets around a ring or hoop")
    mesh_sides: int = Field(default=12, ge=4, le=1024, description="facets around a wire's section")
    write_meshes: bool = True
    cache_size: int = Field(default=4096, ge=0)


@dataclass(frozen=True)
class _Design:
    """A built design with its measurements, so a cache hit costs no geometry at all."""

    key: str
    triangles: int
    volume_mm3: float
    bounding_box_mm: tuple[float, float, float]
    mesh_path: str | None


class Design(Stage[DesignConfig]):
    name = StageName.DESIGN

    def __init__(self, config: DesignConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        self._cache: dict[tuple[ProductType, str, float], _Design] = {}
        self._hits = 0
        self._misses = 0
        self._triangles_built = 0
        self.resume()

    def handle(self, order: JewelryOrder) -> DesignOutput:
        style = resolve_style(order.product_type, order.style)
        cache_key = (order.product_type, style, round(order.size, 2))
        design = self._cache.get(cache_key)
        hit = design is not None
        if design is None:
            design = self._build(order.product_type, style, round(order.size, 2))
            if len(self._cache) < self.config.cache_size:
                self._cache[cache_key] = design
            self._misses += 1
            self._triangles_built += design.triangles
        else:
            self._hits += 1

        if design.volume_mm3 <= 0:
            raise BusinessFailure(f"design {design.key} is not a closed solid (volume {design.volume_mm3:.3f} mm3)")
        metal_g, jade_g = self._weights(order, design.volume_mm3)
        return DesignOutput(
            design_key=design.key,
            triangles=design.triangles,
            volume_mm3=round(design.volume_mm3, 3),
            metal_weight_g=metal_g,
            jade_weight_g=jade_g,
            bounding_box_mm=design.bounding_box_mm,
            mesh_path=design.mesh_path,
            cache_hit=hit,
        )

    def state(self) -> dict[str, Any]:
        return {
            "designs_cached": len(self._cache),
            "cache_hits": self._hits,
            "cache_misses": self._misses,
            "triangles_built": self._triangles_built,
        }

    def checkpoint(self) -> dict[str, Any]:
        """Counters only: the cache is a cache, rebuilt on demand after a restart."""
        return {"hits": self._hits, "misses": self._misses, "triangles_built": self._triangles_built}

    def restore(self, saved: dict[str, Any]) -> None:
        self._hits, self._misses, self._triangles_built = saved["hits"], saved["misses"], saved["triangles_built"]

    @staticmethod
    def _weights(order: JewelryOrder, volume_mm3: float) -> tuple[float, float]:
        """Jade pieces are carved from jade; a metal on a jade order is only its setting."""
        cm3 = volume_mm3 / 1000.0
        if order.jade_grade is not None:
            jade = round(cm3 * JADE_DENSITY_G_CM3, 3)
            metal = round(JADE_SETTING_FRACTION * cm3 * METALS[order.metal].density_g_cm3, 3) if order.metal else 0.0
            return metal, jade
        assert order.metal is not None  # the order model guarantees a metal or a jade grade
        return round(cm3 * METALS[order.metal].density_g_cm3, 3), 0.0

    def _build(self, product: ProductType, style: str, size: float) -> _Design:
        spec = STYLES[product][style]
        mesh = _BUILDERS[product](spec, size, self.config.mesh_segments, self.config.mesh_sides)
        digest = hashlib.sha1(f"{product}|{style}|{size}".encode()).hexdigest()[:10]
        key = f"{product}-{style.replace(' ', '_')}-{size:g}-{digest}"
        path = self.artifact_path("designs", f"{key}.stl") if self.config.write_meshes else None
        if path is not None:
            mesh.write_stl(path, f"jewelry-fanout {key}")
        return _Design(key, mesh.triangles, mesh.volume_mm3(), mesh.bounding_box_mm(), str(path) if path else None)


def _ring(spec: StyleSpec, size: float, segments: int, sides: int) -> Mesh:
    inner_r = ring_inner_diameter_mm(size) / 2.0
    band = torus(inner_r + spec.thickness / 2, spec.thickness / 2, spec.width / 2, segments, sides)
    if not spec.prongs:
        return band
    top = inner_r + spec.thickness  # the head sits on the band's outer surface, along +x
    prong = cylinder(PRONG_RADIUS_MM, PRONG_HEIGHT_MM, max(8, sides))
    angles = np.linspace(0, 2 * np.pi, spec.prongs, endpoint=False)
    # Each prong stands radially out of the band (local z -> +x), around the stone's seat.
    rotations = np.repeat(
        rotation_from_axes(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))[None], spec.prongs, 0
    )
    seat = HEAD_RADIUS_MM
    offsets = np.column_stack([np.full(spec.prongs, top), seat * np.cos(angles), seat * np.sin(angles)])
    head = torus(HEAD_RADIUS_MM, HEAD_WIRE_MM, HEAD_WIRE_MM, max(16, segments // 2), sides)
    head = head.transformed(
        rotation_from_axes(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])), np.array([top + 2.0, 0.0, 0.0])
    )
    return merge(band, prong.replicated(rotations, offsets), head)


def _bangle(spec: StyleSpec, size: float, segments: int, sides: int) -> Mesh:
    return torus(size / 2 + spec.thickness / 2, spec.thickness / 2, spec.width / 2, segments * 2, sides)


def _necklace(spec: StyleSpec, size: float, segments: int, sides: int) -> Mesh:
    """A chain of interlocking round links laid on a circle whose circumference is the length."""
    count = chain_links(spec, size)
    radius = size / (2 * np.pi)
    link = torus(spec.link + spec.wire, spec.wire, spec.wire, max(8, segments // 4), max(4, sides // 2))
    theta = np.arange(count) * 2 * np.pi / count
    tangents = np.column_stack([-np.sin(theta), np.cos(theta), np.zeros(count)])
    radial = np.column_stack([np.cos(theta), np.sin(theta), np.zeros(count)])
    up = np.tile([0.0, 0.0, 1.0], (count, 1))
    # Neighbouring links stand at right angles to each other, as in a cable chain.
    second = np.where((np.arange(count) % 2 == 0)[:, None], radial, up)
    rotations = np.stack([rotation_from_axes(t, s) for t, s in zip(tangents, second, strict=True)])
    return link.replicated(rotations, radial * radius)


def _pendant(spec: StyleSpec, size: float, segments: int, sides: int) -> Mesh:
    t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    half_w = size * spec.width / 2
    if spec.width < 1.0:  # teardrop: pointed at the top where the bail is, round below
        x = half_w * np.sin(t) * (1 - np.cos(t)) / 2 * 1.5
        y = size / 2 * np.cos(t)
    else:
        x, y = half_w * np.cos(t), half_w * np.sin(t)
    body = prism(np.column_stack([x, y]), spec.thickness)
    bail = torus(BAIL_RADIUS_MM, BAIL_WIRE_MM, BAIL_WIRE_MM, max(16, segments // 2), sides).transformed(
        rotation_from_axes(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])),
        np.array([0.0, float(y.max()) + 1.8, 0.0]),
    )
    return merge(body, bail)


def _earrings(spec: StyleSpec, size: float, segments: int, sides: int) -> Mesh:
    """A pair: two hoops, or two studs with their posts, side by side."""
    if spec.wire:
        one = torus(size / 2, spec.wire, spec.wire, segments, sides)
    else:
        t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        disc = prism(np.column_stack([size / 2 * np.cos(t), size / 2 * np.sin(t)]), spec.thickness)
        post = cylinder(STUD_POST_RADIUS_MM, STUD_POST_LENGTH_MM, max(8, sides)).transformed(
            np.eye(3), np.array([0.0, 0.0, spec.thickness / 2])
        )
        one = merge(disc, post)
    gap = size + 5.0
    return merge(
        one.transformed(np.eye(3), np.array([-gap / 2, 0.0, 0.0])),
        one.transformed(np.eye(3), np.array([gap / 2, 0.0, 0.0])),
    )


_BUILDERS = {
    ProductType.RING: _ring,
    ProductType.BANGLE: _bangle,
    ProductType.NECKLACE: _necklace,
    ProductType.PENDANT: _pendant,
    ProductType.EARRINGS: _earrings,
}
