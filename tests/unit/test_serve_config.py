"""serve_config.yaml is a valid Serve config whose application builds from the environment, and the
keys reach the front door's replicas as digests only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from orchestration.http.ingress import app_from_env

CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_the_serve_config_is_valid_and_its_application_builds_with_digests_of_the_keys(monkeypatch, tmp_path):
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    [application] = config.applications
    assert application.import_path == "orchestration.http.ingress:app_from_env" and application.route_prefix == "/"
    keys = tmp_path / "api-keys"
    keys.write_text("# the shop\nshop-secret\n")
    monkeypatch.setenv("JEWELRY_HTTP__API_KEYS_FILE", str(keys))
    built = app_from_env(application.args)
    front_door, api = built._bound_deployment.init_args
    assert front_door.namespace == application.args["namespace"] and front_door.ledger.is_postgres
    assert api.key_digests == (hashlib.sha256(b"shop-secret").hexdigest(),)
    assert "shop-secret" not in repr(built._bound_deployment.init_args)
