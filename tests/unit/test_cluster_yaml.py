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
