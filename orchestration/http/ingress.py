"""The front door as a Ray Serve application: the API (`api`) over the serving system (`backend`).

`run --serve --http` starts it beside the system (`start_front_door`); on a cluster,
`serve deploy serve_config.yaml` does, with the settings from the environment (`app_from_env`).
Serve bounds what waits: `max_ongoing_requests` per replica, then `max_queued_requests` callers
waiting, past which Serve itself answers 503; behind it the Producer's bounded queue answers 503 with
Retry-After. The API keys reach the replicas as digests only.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from loguru import logger
from ray import serve
from ray.serve import Application

from actors.runtime import prepare_process
from orchestration.http.api import ApiConfig, build_api
from orchestration.http.backend import FrontDoorConfig, RayBackend
from orchestration.settings import FanoutSettings, load_settings

APP_NAME = "jewelry-fanout"


@serve.deployment(name="front-door")
@serve.ingress()
class FrontDoor:
    def __init__(self, config: FrontDoorConfig, api: ApiConfig) -> None:
        prepare_process(config.log_level)
        self._backend = RayBackend(config)
        self._api = api

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self._backend, self._api)

    def __del__(self) -> None:  # Serve's hook when it stops a replica: release its ledger connection
        self._backend.close()


def front_door_app(settings: FanoutSettings) -> Application:
    spec = settings.ledger_spec()
    assert spec is not None, "settings validation requires the ledger with the front door"
    http = settings.http
    config = FrontDoorConfig(
        namespace=settings.namespace,
        ledger=spec,
        dispatchers=settings.control.dispatchers,
        log_level=settings.log_level,
    )
    api = ApiConfig(key_digests=http.key_digests(), max_batch=http.max_batch, retry_after_s=http.retry_after_s)
    if not api.key_digests:
        logger.bind(stage="http").warning("no API keys set (http.api_keys): every /v1 call will be refused with 401")
    deployment: Any = FrontDoor.options(  # type: ignore[attr-defined]  # serve.deployment makes a Deployment
        num_replicas=http.replicas,
        max_ongoing_requests=http.max_ongoing_requests,
        max_queued_requests=http.max_queued_requests,
        ray_actor_options={"num_cpus": http.num_cpus},
    )
    application: Application = deployment.bind(config, api)
    return application


def start_front_door(settings: FanoutSettings) -> str:
    """Serve's proxy on `http.host:http.port` and the front door behind it; its base URL."""
    http = settings.http
    serve.start(http_options={"host": http.host, "port": http.port})
    serve.run(front_door_app(settings), name=APP_NAME, route_prefix="/")
    return f"http://{http.host}:{http.port}"


def stop_front_door() -> None:
    """Stop Serve: the front door, its proxy and its controller."""
    serve.shutdown()  # type: ignore[no-untyped-call]  # Ray's own annotation is missing


def app_from_env(args: dict[str, Any]) -> Application:
    """`serve deploy`'s application builder: settings from the environment (`JEWELRY_...`), with the
    config file's `args` (dotted paths, as `--set` takes them) on top."""
    overrides: dict[str, Any] = {}
    for path, value in (args or {}).items():
        target = overrides
        *parents, leaf = str(path).split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return front_door_app(load_settings(overrides))
