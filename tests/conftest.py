"""Shared helpers: sample orders built from the original design's data."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from actors.models import JewelryOrder
from actors.samples import ORIGINAL_ORDERS


def order_dict(index: int = 0, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ORIGINAL_ORDERS[index])
    raw.update(changes)
    return raw


def make_order(index: int = 0, **changes: Any) -> JewelryOrder:
    return JewelryOrder.model_validate(order_dict(index, **changes))


@pytest.fixture
def ring() -> JewelryOrder:
    return make_order(0)


@pytest.fixture
def jade_bangle() -> JewelryOrder:
    return make_order(1)


@pytest.fixture
def necklace() -> JewelryOrder:
    return make_order(2)
