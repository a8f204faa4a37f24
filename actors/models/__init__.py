"""Domain models the actors exchange: orders in, stage results and order outcomes out."""

from actors.models.catalog import GemKind, JadeGrade, Metal, Priority, ProductType
from actors.models.order import Certificate, Destination, Gemstone, JewelryOrder
from actors.models.outputs import (
    BenchBooking,
    DesignOutput,
    LogisticsOutput,
    MaterialOutput,
    PackagingOutput,
    ProductionOutput,
    QualityOutput,
    Reservation,
    StageOutput,
)
from actors.models.results import (
    STAGES,
    DeadLetter,
    FieldError,
    OrderOutcome,
    OrderStatus,
    RejectedRecord,
    StageName,
    StageResult,
    StageSnapshot,
    StageStatus,
)

__all__ = [
    "STAGES",
    "BenchBooking",
    "Certificate",
    "DeadLetter",
    "DesignOutput",
    "Destination",
    "FieldError",
    "GemKind",
    "Gemstone",
    "JadeGrade",
    "JewelryOrder",
    "LogisticsOutput",
    "MaterialOutput",
    "Metal",
    "OrderOutcome",
    "OrderStatus",
    "PackagingOutput",
    "Priority",
    "ProductType",
    "ProductionOutput",
    "QualityOutput",
    "RejectedRecord",
    "Reservation",
    "StageName",
    "StageOutput",
    "StageResult",
    "StageSnapshot",
    "StageStatus",
]
