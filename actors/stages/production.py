"""Production: casting and stone setting scheduled on a fixed set of workbenches.

Time here is workshop time in minutes (a schedule), not wall-clock time: each replica is one
workshop floor whose benches are booked earliest-free-first, so that labour, metal loss and
bench utilisation come out of a real schedule rather than a sleep.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from actors.models import (
    BenchBooking,
    JewelryOrder,
    ProductionOutput,
    ProductType,
    StageName,
    StageOutput,
)
from actors.models.catalog import METALS
from actors.models.styles import metal_allowance_g
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig


class ProductionConfig(StageConfig):
    duration_s: float = Field(default=2.0, ge=0)
    casting_benches: int = Field(default=3, ge=1)
    setting_benches: int = Field(default=2, ge=1)
    casting_minutes: dict[ProductType, float] = Field(
        default_factory=lambda: {
            ProductType.RING: 45.0,
            ProductType.BANGLE: 70.0,
            ProductType.NECKLACE: 90.0,
            ProductType.PENDANT: 50.0,
            ProductType.EARRINGS: 60.0,
        }
    )
    carving_minutes: float = Field(default=120.0, gt=0, description="jade pieces: carving and polishing")
    finishing_minutes_per_gram: float = Field(default=1.5, ge=0)
    setting_minutes_per_stone: float = Field(default=25.0, ge=0)


class _Bench:
    __slots__ = ("busy", "free_at", "name")

    def __init__(self, name: str) -> None:
        self.name, self.free_at, self.busy = name, 0.0, 0.0

    def book(self, earliest: float, minutes: float) -> tuple[float, float]:
        start = max(earliest, self.free_at)
        self.free_at = start + minutes
        self.busy += minutes
        return start, self.free_at

    def release(self, start: float, finish: float) -> None:
        """Give back a booking; the bench is free earlier only if it was the last one."""
        self.busy -= finish - start
        if self.free_at == finish:
            self.free_at = start


class Production(Stage[ProductionConfig]):
    name = StageName.PRODUCTION

    def __init__(self, config: ProductionConfig, context: ReplicaContext) -> None:
        super().__init__(config, context)
        prefix = context.replica
        self._casting = [_Bench(f"{prefix}/cast-{i}") for i in range(config.casting_benches)]
        self._setting = [_Bench(f"{prefix}/set-{i}") for i in range(config.setting_benches)]
        self._benches = {bench.name: bench for bench in self._casting + self._setting}
        self._metal_loss_g = 0.0
        self._labour_minutes = 0.0
        self._orders = 0
        self._cancelled = 0
        self.resume()

    def handle(self, order: JewelryOrder) -> ProductionOutput:
        allowance = metal_allowance_g(order)
        if order.metal is None:
            first_minutes = self.config.carving_minutes
            loss = 0.0
        else:
            first_minutes = self.config.casting_minutes[order.product_type]
            first_minutes += allowance * self.config.finishing_minutes_per_gram
            loss = allowance * METALS[order.metal].casting_loss_fraction
            if order.jade_grade is not None:
                first_minutes += self.config.carving_minutes
        casting = min(self._casting, key=lambda bench: bench.free_at)
        start, cast_done = casting.book(0.0, first_minutes)
        bookings = [(casting, start, cast_done)]
        finish, setting_name, setting_minutes = cast_done, None, 0.0
        if order.gemstones:
            setting = min(self._setting, key=lambda bench: bench.free_at)
            setting_minutes = self.config.setting_minutes_per_stone * len(order.gemstones)
            set_start, finish = setting.book(cast_done, setting_minutes)
            setting_name = setting.name
            bookings.append((setting, set_start, finish))

        labour = first_minutes + setting_minutes
        self._metal_loss_g += loss
        self._labour_minutes += labour
        self._orders += 1
        return ProductionOutput(
            casting_bench=casting.name,
            setting_bench=setting_name,
            start_minute=round(start, 2),
            finish_minute=round(finish, 2),
            labour_minutes=round(labour, 2),
            metal_loss_g=round(loss, 3),
            bookings=tuple(BenchBooking(bench=bench.name, start=s, finish=f) for bench, s, f in bookings),
        )

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        assert isinstance(output, ProductionOutput)  # the base calls undo once, for a scheduled order
        for booking in output.bookings:
            self._benches[booking.bench].release(booking.start, booking.finish)
        self._metal_loss_g -= output.metal_loss_g
        self._labour_minutes -= output.labour_minutes
        self._orders -= 1
        self._cancelled += 1
        return "freed " + ", ".join(f"{b.bench} minutes {b.start:g}-{b.finish:g}" for b in output.bookings)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "benches": {name: [bench.free_at, bench.busy] for name, bench in self._benches.items()},
            "metal_loss_g": self._metal_loss_g,
            "labour_minutes": self._labour_minutes,
            "orders": self._orders,
            "cancelled": self._cancelled,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        for name, (free_at, busy) in saved["benches"].items():
            self._benches[name].free_at, self._benches[name].busy = free_at, busy
        self._metal_loss_g, self._labour_minutes = saved["metal_loss_g"], saved["labour_minutes"]
        self._orders, self._cancelled = saved["orders"], saved["cancelled"]

    def state(self) -> dict[str, Any]:
        benches = self._casting + self._setting
        makespan = max(bench.free_at for bench in benches)
        return {
            "orders_scheduled": self._orders,
            "orders_cancelled": self._cancelled,
            "makespan_minutes": round(makespan, 2),
            "labour_minutes": round(self._labour_minutes, 2),
            "metal_loss_g": round(self._metal_loss_g, 3),
            "bench_utilisation": {
                bench.name: round(bench.busy / makespan, 4) if makespan else 0.0 for bench in benches
            },
        }
