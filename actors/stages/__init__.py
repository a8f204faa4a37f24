"""The six stages: each module holds one stage's business rules and state, nothing else.

Names are imported on first use (PEP 562). A stage replica's worker process unpickles only its
own stage's module, so seven of every eight actors skip Design's numpy, a visible share of what a
worker takes to start; it shows in every start and every restart."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from actors.models import StageName

if TYPE_CHECKING:
    from actors.stages.base import Stage
    from actors.stages.contract import ReplicaContext, StageConfig
    from actors.stages.design import Design, DesignConfig
    from actors.stages.logistics import Logistics, LogisticsConfig
    from actors.stages.material import MaterialConfig, MaterialVerification
    from actors.stages.packaging import Packaging, PackagingConfig
    from actors.stages.production import Production, ProductionConfig
    from actors.stages.quality import QualityConfig, QualityInspection

    STAGE_CLASSES: dict[StageName, type[Stage[Any]]]
    STAGE_CONFIGS: dict[StageName, type[StageConfig]]

# Each stage: its module, its class and its config class.
_STAGES: dict[StageName, tuple[str, str, str]] = {
    StageName.MATERIAL: ("material", "MaterialVerification", "MaterialConfig"),
    StageName.DESIGN: ("design", "Design", "DesignConfig"),
    StageName.PRODUCTION: ("production", "Production", "ProductionConfig"),
    StageName.QUALITY: ("quality", "QualityInspection", "QualityConfig"),
    StageName.PACKAGING: ("packaging", "Packaging", "PackagingConfig"),
    StageName.LOGISTICS: ("logistics", "Logistics", "LogisticsConfig"),
}
_WHERE: dict[str, str] = {"ReplicaContext": "contract", "Stage": "base", "StageConfig": "contract"} | {
    name: module for module, *names in _STAGES.values() for name in names
}


def _stage_module(stage: StageName) -> Any:
    return import_module(f"actors.stages.{_STAGES[stage][0]}")


def __getattr__(name: str) -> Any:
    if name == "STAGE_CLASSES":
        value: Any = {stage: getattr(_stage_module(stage), cls) for stage, (_, cls, _) in _STAGES.items()}
    elif name == "STAGE_CONFIGS":
        value = {stage: getattr(_stage_module(stage), config) for stage, (_, _, config) in _STAGES.items()}
    elif name in _WHERE:
        value = getattr(import_module(f"actors.stages.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "STAGE_CLASSES",
    "STAGE_CONFIGS",
    "Design",
    "DesignConfig",
    "Logistics",
    "LogisticsConfig",
    "MaterialConfig",
    "MaterialVerification",
    "Packaging",
    "PackagingConfig",
    "Production",
    "ProductionConfig",
    "QualityConfig",
    "QualityInspection",
    "ReplicaContext",
    "Stage",
    "StageConfig",
]
