"""Stock lots and their units: what operators write (grams, carats, pieces) and what the ledger keeps
(integer milligrams, milli-carats, pieces), so that conservation holds exactly."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MILLI = 1000
KINDS = {"metal": "g", "gem": "ct", "jade": "pcs", "box": "pcs"}


def unit_of(lot: str) -> str:
    kind = lot.split("/", 1)[0]
    if kind not in KINDS or "/" not in lot:
        raise ValueError(f"lot {lot!r}: expected metal/<hallmark>, gem/<lot>, jade/<grade> or box/<product>")
    return KINDS[kind]


def stored_quantity(lot: str, amount: str) -> int:
    """An operator's amount of a lot (e.g. "250.5" grams of metal/AU750) in the ledger's integer unit."""
    unit = unit_of(lot)
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{lot}: {amount!r} is not a number of {unit}") from None
    stored = value * MILLI if unit in ("g", "ct") else value
    if stored != stored.to_integral_value() or stored <= 0:
        raise ValueError(
            f"{lot}: {amount} {unit} must be positive and a whole number of "
            f"{'milli-' + unit if unit != 'pcs' else 'pieces'}"
        )
    return int(stored)


def human(lot: str, quantity: int) -> str:
    """A stored quantity in the lot's own unit: '2.947 g', '0.500 ct', '3 pcs'."""
    unit = unit_of(lot)
    return f"{quantity / MILLI:.3f} {unit}" if unit in ("g", "ct") else f"{quantity} pcs"
