"""Workshop reference data: metals, jade grades, product types and their size conventions.

Kept in one place because several stages reason about the same facts (material reserves metal
by the allowance, production computes casting loss from it, quality checks the fineness standard,
design weighs the mesh by the density) and they must never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProductType(StrEnum):
    RING = "ring"
    BANGLE = "bangle"
    NECKLACE = "necklace"
    PENDANT = "pendant"
    EARRINGS = "earrings"


class Metal(StrEnum):
    """Metal by its hallmark code; the number is the fineness in parts per thousand."""

    AU999 = "AU999"
    AU750 = "AU750"
    AU585 = "AU585"
    PT950 = "PT950"
    PT900 = "PT900"
    AG925 = "AG925"


class JadeGrade(StrEnum):
    """Jadeite treatment grade: A natural, B bleached and impregnated, C dyed."""

    A = "A"
    B = "B"
    C = "C"


class GemKind(StrEnum):
    DIAMOND = "diamond"
    RUBY = "ruby"
    SAPPHIRE = "sapphire"
    EMERALD = "emerald"
    PEARL = "pearl"


class Priority(StrEnum):
    NORMAL = "normal"
    RUSH = "rush"

    @property
    def rank(self) -> int:
        """Where the priority sorts in every queue an order meets: rush (0) before normal (1)."""
        return 0 if self is Priority.RUSH else 1


@dataclass(frozen=True)
class MetalSpec:
    name: str
    fineness_permille: int
    density_g_cm3: float
    casting_loss_fraction: float


METALS: dict[Metal, MetalSpec] = {
    Metal.AU999: MetalSpec("24K gold", 999, 19.32, 0.020),
    Metal.AU750: MetalSpec("18K gold", 750, 15.50, 0.030),
    Metal.AU585: MetalSpec("14K gold", 585, 13.20, 0.030),
    Metal.PT950: MetalSpec("PT950 platinum", 950, 20.70, 0.050),
    Metal.PT900: MetalSpec("PT900 platinum", 900, 20.40, 0.050),
    Metal.AG925: MetalSpec("925 silver", 925, 10.36, 0.040),
}

# Names people write in order files, mapped to hallmark codes.
METAL_ALIASES: dict[str, Metal] = {
    "18k": Metal.AU750,
    "18k gold": Metal.AU750,
    "au750": Metal.AU750,
    "g18k": Metal.AU750,
    "14k": Metal.AU585,
    "14k gold": Metal.AU585,
    "au585": Metal.AU585,
    "24k": Metal.AU999,
    "24k gold": Metal.AU999,
    "au999": Metal.AU999,
    "pure gold": Metal.AU999,
    "pt950": Metal.PT950,
    "platinum": Metal.PT950,
    "pt900": Metal.PT900,
    "ag925": Metal.AG925,
    "s925": Metal.AG925,
    "sterling silver": Metal.AG925,
}

JADE_DENSITY_G_CM3 = 3.33

DIAMOND_COLOURS = tuple("DEFGHIJKLMNOPQRSTUVWXYZ")
CLARITY_GRADES = ("FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "I1", "I2", "I3")

# Certificate number formats by laboratory (GIA report numbers are ten digits).
CERTIFICATE_FORMATS: dict[str, str] = {
    "GIA": r"^\d{10}$",
    "IGI": r"^(LG)?\d{9}$",
    "HRD": r"^\d{9,11}$",
    "NGTC": r"^[A-Z]?\d{10,12}$",
}


@dataclass(frozen=True)
class SizeConvention:
    """What the order's `size` means for a product type, and the range a workshop accepts."""

    meaning: str
    minimum: float
    maximum: float


SIZE_CONVENTIONS: dict[ProductType, SizeConvention] = {
    ProductType.RING: SizeConvention("US ring size", 3.0, 15.0),
    ProductType.BANGLE: SizeConvention("inner diameter in mm", 45.0, 80.0),
    ProductType.NECKLACE: SizeConvention("chain length in mm", 350.0, 900.0),
    ProductType.PENDANT: SizeConvention("pendant height in mm", 8.0, 60.0),
    ProductType.EARRINGS: SizeConvention("hoop or stud diameter in mm", 4.0, 50.0),
}


def ring_inner_diameter_mm(us_size: float) -> float:
    """Inner diameter of a ring from its US size (ISO 8653 linear approximation)."""
    return 11.63 + 0.8128 * us_size
