"""One typed settings root, built once at the entrypoint and passed down.

Precedence, lowest first: defaults in code, environment (`JEWELRY_`, nested with `__`, e.g.
`JEWELRY_PRODUCTION__REPLICAS=4`), an optional TOML file, the command line. Each stage has one
section holding both how its pool runs on Ray (replicas, resources, timeout) and its business
settings (durations, stock, defect rate), so an operator tunes a stage in one place.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from actors.dispatch.autoscaling import AutoscalingConfig
from actors.dispatch.batching import BatchPolicy
from actors.dispatch.breaker import BreakerPolicy
from actors.dispatch.retry import RetryPolicy
from actors.errors import ConfigurationError
from actors.intake.http_intake import HttpLimits
from actors.intake.sources import SourceSpec
from actors.ledger import LedgerSpec
from actors.models import STAGES, StageName
from actors.stages import (
    STAGE_CONFIGS,
    DesignConfig,
    LogisticsConfig,
    MaterialConfig,
    PackagingConfig,
    ProductionConfig,
    QualityConfig,
    StageConfig,
)

# Stages that draw on the shared workshop (stock, certificates, numbers): without a ledger they
# still need one store that all their replicas share (`stage_ledger_spec`).
WORKSHOP_STAGES = (StageName.MATERIAL, StageName.PACKAGING, StageName.LOGISTICS)
# Business settings that are the initial stock of a new ledger; an existing one keeps its stock
# (operators add to it with `restock`), so they do not bind a ledger.
STOCK_FIELDS = {"metal_stock_g", "gem_stock_ct", "jade_pieces", "stock_multiplier", "box_stock"}


class PoolSettings(BaseModel):
    """How a stage's replicas are placed and called on Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(default=1, ge=1, le=100)
    num_cpus: float = Field(default=0.1, ge=0, description="CPU reserved per replica; fractions are fine")
    memory_mb: int | None = Field(default=None, ge=1)
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per replica")
    scheduling: Literal["SPREAD", "DEFAULT"] = "SPREAD"
    timeout_s: float | None = Field(
        default=300.0,
        gt=0,
        description="per order and attempt, from when it is queued for the replica: waiting included",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="for errors and timeouts only")
    breaker: BreakerPolicy = Field(
        default_factory=BreakerPolicy, description="stop calling the stage while most of its calls fail"
    )
    autoscaling: AutoscalingConfig | None = Field(
        default=None, description="grow and shrink between min and max replicas; `replicas` is then the starting size"
    )

    @property
    def slots(self) -> int:
        """Replica indexes the pool may use: stock shares and number ranges are laid out over these."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.replicas


# A stage's section: how its pool runs (`PoolSettings`) and its business settings (its config class).
class MaterialSettings(PoolSettings, MaterialConfig):
    pass


class DesignSettings(PoolSettings, DesignConfig):
    pass


class ProductionSettings(PoolSettings, ProductionConfig):
    pass


class QualitySettings(PoolSettings, QualityConfig):
    pass


class PackagingSettings(PoolSettings, PackagingConfig):
    pass


class LogisticsSettings(PoolSettings, LogisticsConfig):
    pass


StageSettings = (
    MaterialSettings | DesignSettings | ProductionSettings | QualitySettings | PackagingSettings | LogisticsSettings
)


class ControlActorSettings(BaseModel):
    """The control plane: placement of the Producer and the Dispatchers, and how many Dispatchers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(default=0.1, ge=0)
    dispatchers: int = Field(
        default=1, ge=1, le=64, description="Dispatcher shards; an order goes to one by a stable hash of its id"
    )
    outbox_limit: int = Field(default=10_000, ge=1, description="finished outcomes the driver has not collected")


class LedgerSettings(BaseModel):
    """The durable ledger that lets actors restart and runs resume (see the README's Guarantees)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="off: faster, but nothing survives a crash and nothing restarts")
    location: str | None = Field(
        default=None, description="file path, sqlite:/// or postgresql:// URL; default <out_dir>/ledger.sqlite3"
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="NORMAL survives process crashes; FULL also power loss, at a cost per commit"
    )
    max_restarts: int = Field(default=-1, ge=-1, description="restarts per actor; -1 = unlimited")
    stock_slots: int = Field(
        default=1, ge=1, le=64, description="PostgreSQL: rows per stock lot, to spread a hot lot's updates"
    )
    retry_s: float = Field(
        default=60.0,
        gt=0,
        description="PostgreSQL: how long a transaction is retried through "
        "lost connections and restarts before its orders are reported unfinished",
    )

    @field_validator("location")
    @classmethod
    def _a_location_we_can_open(cls, location: str | None) -> str | None:
        """Refused with the settings (exit 2, for every command), not when an actor first opens it."""
        if location is not None:
            try:
                LedgerSpec.from_location(location)
            except ConfigurationError as error:
                raise ValueError(str(error)) from error
        return location


class HttpSettings(BaseModel):
    """The HTTP front door (`run --serve --http`): a Ray Serve application in front of the Producer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="where the front door listens; 0.0.0.0 for every interface")
    port: int | None = Field(default=None, ge=1, le=65535, description="its port; none: no front door")
    api_keys: tuple[SecretStr, ...] = Field(
        default=(), description="bearer keys that may call /v1 (none by default: every call is refused)"
    )
    api_keys_file: Path | None = Field(default=None, description="a file of further keys, one per line")
    max_batch: int = Field(default=500, ge=1, le=10_000, description="orders per POST /v1/orders:batch")
    max_queued: int = Field(
        default=1000, ge=1, description="accepted orders waiting for admission; past it a POST gets 503"
    )
    retry_after_s: float = Field(default=1.0, gt=0, description="the Retry-After of a 503")
    idempotency_ttl_h: float = Field(default=24.0, gt=0, description="how long an idempotency key is kept")
    rate_limit_per_s: float | None = Field(
        default=None, gt=0, description="order-taking requests (POST) a second per API key, burst the same; past it 429"
    )
    replicas: int = Field(default=1, ge=1, le=64, description="front door replicas (Serve deployment)")
    max_ongoing_requests: int = Field(default=64, ge=1, description="requests a replica works on at once")
    max_queued_requests: int = Field(
        default=256, ge=1, description="requests waiting for a replica; past it Serve answers 503"
    )
    num_cpus: float = Field(default=0.1, ge=0, description="CPU reserved per front door replica")

    def key_digests(self) -> tuple[str, ...]:
        """The keys as the front door holds them: digests, so that no key travels or is logged."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.expanduser().read_text(encoding="utf-8")
            except OSError as error:
                raise ConfigurationError(f"http.api_keys_file {self.api_keys_file}: {error}") from error
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return tuple(sorted({key_digest(key) for key in keys}))

    def limits(self) -> HttpLimits:
        return HttpLimits(self.max_queued, self.retry_after_s, self.idempotency_ttl_h * 3600, self.rate_limit_per_s)


def key_digest(key: str) -> str:
    """An API key as it is kept and compared: its SHA-256 (the first 16 hex digits name the client)."""
    return hashlib.sha256(key.encode()).hexdigest()


class FanoutSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JEWELRY_", env_nested_delimiter="__", extra="forbid", frozen=True, validate_default=True
    )

    namespace: str = Field(default="jewelry-fanout", min_length=1)
    orders: int = Field(default=100, ge=0, description="orders to generate when no input file is given")
    input: Path | None = Field(default=None, description="JSONL or CSV file of orders")
    seed: int = 2025
    time_scale: float = Field(default=1.0, ge=0, description="multiplies every stage's duration; 0 = no waiting")
    max_in_flight: int = Field(default=100, ge=1, description="orders at the dispatcher at once")
    out_dir: Path = Path("out")
    artifacts: bool = Field(default=True, description="write STL meshes and certificate documents")
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    actor_start_timeout_s: float = Field(default=120.0, gt=0)
    ray_num_cpus: int | None = Field(default=None, ge=1, description="CPUs of the embedded local Ray")
    dashboard: bool = Field(default=True, description="start the Ray dashboard with the embedded local Ray")
    control: ControlActorSettings = Field(default_factory=ControlActorSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    batching: BatchPolicy = Field(
        default_factory=BatchPolicy, description="stage calls per replica (see actors/dispatch/batching.py)"
    )
    material: MaterialSettings = Field(default_factory=MaterialSettings)
    design: DesignSettings = Field(default_factory=DesignSettings)
    production: ProductionSettings = Field(default_factory=ProductionSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    packaging: PackagingSettings = Field(default_factory=PackagingSettings)
    logistics: LogisticsSettings = Field(default_factory=LogisticsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init values carry TOML merged under CLI (see `load_settings`), so they outrank env.
        return (init_settings, env_settings)

    @model_validator(mode="after")
    def _pools_that_can_scale(self) -> FanoutSettings:
        for stage in STAGES:
            pool, scaling = self.pool(stage), self.pool(stage).autoscaling
            if scaling is None:
                continue
            if not self.ledger.enabled:
                raise ValueError(f"{stage}.autoscaling needs the ledger: a replica scaled away leaves its state there")
            if not scaling.min_replicas <= pool.replicas <= scaling.max_replicas:
                raise ValueError(
                    f"{stage}.replicas ({pool.replicas}) must be within autoscaling's min_replicas "
                    f"({scaling.min_replicas}) and max_replicas ({scaling.max_replicas})"
                )
        return self

    @model_validator(mode="after")
    def _front_door_with_a_ledger(self) -> FanoutSettings:
        if self.http.port is not None and not self.ledger.enabled:
            raise ValueError("the HTTP front door keeps idempotency keys and accepted orders in the ledger: enable it")
        return self

    def autoscaled(self) -> dict[StageName, AutoscalingConfig]:
        return {stage: scaling for stage in STAGES if (scaling := self.pool(stage).autoscaling) is not None}

    def pool(self, stage: StageName) -> StageSettings:
        return cast(StageSettings, getattr(self, stage.value))

    def stage_config(self, stage: StageName) -> StageConfig:
        """The stage's business settings alone, as the plain config class its actor takes."""
        config_cls = STAGE_CONFIGS[stage]
        return config_cls.model_validate(self.pool(stage).model_dump(include=set(config_cls.model_fields)))

    def ledger_spec(self) -> LedgerSpec | None:
        if not self.ledger.enabled:
            return None
        location = self.ledger.location or str(self.out_dir / "ledger.sqlite3")
        return LedgerSpec.from_location(
            location, self.ledger.synchronous, self.ledger.stock_slots, self.ledger.retry_s, self.namespace
        )

    def scratch_workshop(self) -> LedgerSpec:
        """Where a run without a ledger keeps its workshop: a throwaway SQLite file, made anew by each
        run, that the workshop stages' replicas share (one machine only)."""
        return LedgerSpec(
            path=(self.out_dir / "workshop.scratch.sqlite3").expanduser().resolve(), namespace=self.namespace
        )

    def stage_ledger_spec(self, stage: StageName) -> LedgerSpec | None:
        """The store a stage replica journals in: the ledger; without one, the scratch workshop for
        the stages that share stock or numbers, and memory for the rest."""
        if self.ledger.enabled:
            return self.ledger_spec()
        return self.scratch_workshop() if stage in WORKSHOP_STAGES else None

    def stage_setup(self) -> dict[str, Any]:
        """What a ledger's stage state depends on: the stages' business settings. Durations and replica
        counts may change freely (replicas share one workshop), and so may the stock settings, which
        are a new ledger's initial stock."""
        return {
            stage.value: _canonical(
                self.stage_config(stage).model_dump(mode="json", exclude={"duration_s", *STOCK_FIELDS})
            )
            for stage in STAGES
        }

    def source(self) -> SourceSpec:
        if self.input is not None:
            return SourceSpec(path=self.input.expanduser().resolve(), seed=self.seed)
        return SourceSpec(count=self.orders, seed=self.seed)

    def theoretical_limit_per_s(self) -> float | None:
        """Orders per second the slowest pool allows: min over stages of replicas / scaled duration,
        counting an autoscaled pool at its max replicas (what the pool may grow to)."""
        rates = [
            self.pool(s).slots / (self.pool(s).duration_s * self.time_scale)
            for s in STAGES
            if self.pool(s).duration_s * self.time_scale > 0
        ]
        return min(rates) if rates else None

    def timeout_warnings(self) -> list[str]:
        """Pools whose queue, full at `max_in_flight`, takes longer to drain than their timeout."""
        warnings = []
        for stage in STAGES:
            pool = self.pool(stage)
            drain_s = self.max_in_flight * pool.duration_s * self.time_scale / pool.replicas
            if pool.timeout_s is not None and drain_s > pool.timeout_s:
                warnings.append(
                    f"{stage}: a full queue ({self.max_in_flight} orders) takes {drain_s:.0f} s to drain on "
                    f"{pool.replicas} replica(s), over its {pool.timeout_s:g} s timeout; raise "
                    f"{stage}.timeout_s or its replicas, or lower max_in_flight"
                )
        return warnings


def _canonical(value: Any) -> Any:
    """Sets dump as lists in hash order, which differs between processes: sort them."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    return value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(overrides: dict[str, Any] | None = None, config_file: Path | None = None) -> FanoutSettings:
    """Defaults < environment < TOML file < `overrides` (the command line)."""
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ConfigurationError(f"config file {config_file} does not exist") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError(f"config file {config_file} is not valid TOML: {error}") from error
    return FanoutSettings(**deep_merge(from_file, overrides or {}))
