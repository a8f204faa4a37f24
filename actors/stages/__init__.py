"""The six stages: each module holds one stage's business rules and state, nothing else."""

from actors.models import StageName
from actors.stages.base import ReplicaContext, Stage, StageConfig
from actors.stages.design import Design, DesignConfig
from actors.stages.logistics import Logistics, LogisticsConfig
from actors.stages.material import MaterialConfig, MaterialVerification
from actors.stages.packaging import Packaging, PackagingConfig
from actors.stages.production import Production, ProductionConfig
from actors.stages.quality import QualityConfig, QualityInspection

STAGE_CLASSES: dict[StageName, type[Stage]] = {
    StageName.MATERIAL: MaterialVerification,
    StageName.DESIGN: Design,
    StageName.PRODUCTION: Production,
    StageName.QUALITY: QualityInspection,
    StageName.PACKAGING: Packaging,
    StageName.LOGISTICS: Logistics,
}

STAGE_CONFIGS: dict[StageName, type[StageConfig]] = {
    StageName.MATERIAL: MaterialConfig,
    StageName.DESIGN: DesignConfig,
    StageName.PRODUCTION: ProductionConfig,
    StageName.QUALITY: QualityConfig,
    StageName.PACKAGING: PackagingConfig,
    StageName.LOGISTICS: LogisticsConfig,
}

__all__ = [
    "STAGE_CLASSES", "STAGE_CONFIGS", "Design", "DesignConfig", "Logistics", "LogisticsConfig",
    "MaterialConfig", "MaterialVerification", "Packaging", "PackagingConfig", "Production",
    "ProductionConfig", "QualityConfig", "QualityInspection", "ReplicaContext", "Stage", "StageConfig",
]
