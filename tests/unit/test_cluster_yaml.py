"""cluster.yaml is checked against the schema the installed Ray ships, so a typo fails CI."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml

REPO = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_config(), schema)


def test_rays_own_validator_accepts_it_after_filling_defaults():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_config()))


def test_a_typo_is_caught():
    broken = _config()
    broken["available_node_types"]["design_worker"]["max_wokers"] = 3
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError as error:
        assert "max_wokers" in str(error)
    else:
        raise AssertionError("the schema accepted an unknown key")


def test_the_design_workers_offer_what_design_replicas_ask_for():
    types = _config()["available_node_types"]
    assert types["design_worker"]["resources"]["design_node"] >= 1
    assert "design_node" not in types["stage_worker"]["resources"]
    starts = " ".join(_config()["head_start_ray_commands"])
    assert "--metrics-export-port" in starts and "--dashboard-host=127.0.0.1" in starts


def test_every_node_joins_with_the_one_auth_token():
    """Token auth on every node (RAY_AUTH_MODE must match cluster-wide), all with the token file
    that the operator made: a worker node without it could not join the head."""
    config = _config()
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(command for command in config[key] if "ray start" in command)
        assert "export RAY_AUTH_MODE=token;" in start.split("ray start")[0], key
    assert any("chmod 600" in c and "~/.ray/auth_token" in c for c in config["setup_commands"])
