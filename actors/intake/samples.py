"""Sample orders: the three of the original design, then realistic generated ones from a seed.

Generated orders use the workshop's named styles and sizes people actually order, certified
centre stones with unique report numbers, and declared values from metal and stone prices, so
that every stage's business rules are exercised by a plain `--orders N`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from actors.models import JewelryOrder
from actors.models.catalog import CLARITY_GRADES, GemKind, Metal, ProductType
from actors.models.styles import STYLES, metal_allowance_g

T = TypeVar("T")
SHANGHAI = timezone(timedelta(hours=8))
FIRST_ORDER_TIME = datetime(2025, 1, 15, 9, 0, tzinfo=SHANGHAI)

ORIGINAL_ORDERS: tuple[dict[str, Any], ...] = (
    {
        "order_id": "J2025001",
        "product_type": "ring",
        "metal": "AU750",
        "gemstones": [
            {
                "kind": "diamond",
                "carat": 0.5,
                "colour": "G",
                "clarity": "VS1",
                "certificate": {"lab": "GIA", "number": "2141438167"},
            },
        ],
        "style": "classic six-prong",
        "size": 6.5,
        "customer": "Lin Xiaoyu",
        "destination": {"city": "Shanghai", "country": "CN", "postal_code": "200040"},
        "declared_value": "28800.00",
        "priority": "normal",
        "created_at": "2025-01-15T09:00:00+08:00",
    },
    {
        "order_id": "J2025002",
        "product_type": "bangle",
        "jade_grade": "A",
        "style": "retro round bar",
        "size": 56,
        "customer": "Chen Jing",
        "destination": {"city": "Hong Kong", "country": "HK"},
        "declared_value": "168000.00",
        "priority": "rush",
        "created_at": "2025-01-15T09:01:00+08:00",
    },
    {
        "order_id": "J2025003",
        "product_type": "necklace",
        "metal": "PT950",
        "style": "minimal collarbone chain",
        "size": 450,
        "customer": "Wang Fang",
        "destination": {"city": "Beijing", "country": "CN", "postal_code": "100010"},
        "declared_value": "6800.00",
        "priority": "normal",
        "created_at": "2025-01-15T09:02:00+08:00",
    },
)

_PRODUCTS = {
    ProductType.RING: 35,
    ProductType.NECKLACE: 20,
    ProductType.PENDANT: 20,
    ProductType.EARRINGS: 15,
    ProductType.BANGLE: 10,
}
_METALS = {Metal.AU750: 45, Metal.PT950: 25, Metal.AU585: 10, Metal.AU999: 10, Metal.PT900: 5, Metal.AG925: 5}
_PRICE_PER_G = {
    Metal.AU999: 620,
    Metal.AU750: 480,
    Metal.AU585: 370,
    Metal.PT950: 260,
    Metal.PT900: 245,
    Metal.AG925: 8,
}
_SIZES: dict[ProductType, list[float]] = {
    ProductType.RING: [x / 2 for x in range(8, 21)],
    ProductType.BANGLE: list(range(52, 63)),
    ProductType.NECKLACE: [400, 420, 450, 500],
    ProductType.PENDANT: [12, 15, 18, 20, 25],
}
_EARRING_SIZES: dict[str, list[float]] = {"hoop": [12, 15, 20, 25, 30], "stud": [5, 6, 8]}
_CITIES = [
    ("Shanghai", "CN"),
    ("Beijing", "CN"),
    ("Shenzhen", "CN"),
    ("Hangzhou", "CN"),
    ("Chengdu", "CN"),
    ("Guangzhou", "CN"),
    ("Hong Kong", "HK"),
    ("Singapore", "SG"),
    ("Tokyo", "JP"),
    ("Paris", "FR"),
    ("New York", "US"),
    ("London", "GB"),
]
_SURNAMES = ["Zhang", "Wang", "Li", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"]
_GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Jie", "Tao", "Xiaoyu", "Hui", "Ying"]


def original_orders() -> list[JewelryOrder]:
    return [JewelryOrder.model_validate(raw) for raw in ORIGINAL_ORDERS]


def generate_orders(count: int, seed: int = 2025) -> Iterator[JewelryOrder]:
    """The three original orders first, then seeded realistic ones: same seed, same orders."""
    originals = original_orders()
    yield from originals[:count]
    rng = random.Random(seed)
    certificate_base = rng.randrange(1_000_000_000, 8_000_000_000)
    for index in range(len(originals), count):
        yield _random_order(rng, index, certificate_base)


def _pick(rng: random.Random, weights: Mapping[T, int]) -> T:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _random_order(rng: random.Random, index: int, certificate_base: int) -> JewelryOrder:
    product = _pick(rng, _PRODUCTS)
    style = rng.choice(list(STYLES[product]))
    size = rng.choice(_EARRING_SIZES[style] if product is ProductType.EARRINGS else _SIZES[product])
    metal: Metal | None = _pick(rng, _METALS)
    jade: str | None = None
    if product is ProductType.BANGLE and rng.random() < 0.5:
        metal, jade = None, rng.choices("ABC", weights=[70, 20, 10])[0]
    elif product is ProductType.PENDANT and rng.random() < 0.15:
        metal, jade = Metal.AU750, rng.choices("ABC", weights=[70, 20, 10])[0]

    stones: list[dict[str, Any]] = []
    if product is ProductType.RING and style != "plain band":
        stones.append(_certified_stone(rng, GemKind.DIAMOND, rng.uniform(0.3, 1.5), certificate_base + index * 4))
    elif product is ProductType.EARRINGS and style == "stud":
        stones.extend(
            {
                "kind": "diamond",
                "carat": round(rng.uniform(0.1, 0.25), 2),
                "colour": rng.choice("EFGH"),
                "clarity": rng.choice(CLARITY_GRADES[3:7]),
            }
            for _ in range(2)
        )
    elif product is ProductType.PENDANT and jade is None and rng.random() < 0.4:
        kind = rng.choice([GemKind.RUBY, GemKind.SAPPHIRE, GemKind.EMERALD])
        stones.append(_certified_stone(rng, kind, rng.uniform(0.5, 2.0), certificate_base + index * 4 + 1))

    city, country = rng.choice(_CITIES)
    raw = {
        "order_id": f"J2025{index + 1:06d}",
        "product_type": product,
        "metal": metal,
        "jade_grade": jade,
        "gemstones": stones,
        "style": style,
        "size": size,
        "customer": f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}",
        "destination": {"city": city, "country": country},
        "declared_value": "0.01",
        "priority": "rush" if rng.random() < 0.1 else "normal",
        "created_at": FIRST_ORDER_TIME + timedelta(minutes=index),
    }
    order = JewelryOrder.model_validate(raw)
    return order.model_copy(update={"declared_value": _declared_value(rng, order)})


def _certified_stone(rng: random.Random, kind: GemKind, carat: float, number: int) -> dict[str, Any]:
    colour = rng.choice("DEFGHIJ") if kind is GemKind.DIAMOND else rng.choice(["vivid", "deep", "medium"])
    return {
        "kind": kind,
        "carat": round(carat, 2),
        "colour": colour,
        "clarity": rng.choice(CLARITY_GRADES[2:7]),
        "certificate": {"lab": "GIA", "number": f"{number % 10_000_000_000:010d}"},
    }


def _declared_value(rng: random.Random, order: JewelryOrder) -> Decimal:
    value = 800.0 + (metal_allowance_g(order) * _PRICE_PER_G[order.metal] if order.metal else 0.0)
    value += sum(stone.carat**1.6 * (32_000 if stone.kind is GemKind.DIAMOND else 9_000) for stone in order.gemstones)
    if order.jade_grade is not None:
        value += {"A": rng.uniform(30_000, 180_000), "B": rng.uniform(2_000, 8_000), "C": rng.uniform(500, 2_000)}[
            order.jade_grade
        ]
    return Decimal(f"{value:.2f}")
