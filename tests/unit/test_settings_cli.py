import argparse
import json

import pytest
from pydantic import ValidationError

from actors.errors import SystemStartError
from actors.ledger import LedgerMismatch, open_ledger
from actors.models import StageName
from orchestration.cli import _replicas, build_parser, main, overrides_from
from orchestration.report import percentile
from orchestration.settings import load_settings


def test_precedence_is_defaults_then_env_then_toml_then_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("JEWELRY_TIME_SCALE", "0.5")
    monkeypatch.setenv("JEWELRY_MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("JEWELRY_PRODUCTION__REPLICAS", "2")
    config = tmp_path / "fanout.toml"
    config.write_text("max_in_flight = 9\n[production]\nbenches = 1\n".replace("benches", "casting_benches"))
    settings = load_settings({"production": {"replicas": 4}}, config)
    assert settings.time_scale == 0.5  # env over default
    assert settings.max_in_flight == 9  # TOML over env
    assert settings.production.replicas == 4  # CLI over env
    assert settings.production.casting_benches == 1 and settings.production.duration_s == 2.0  # merged, not replaced


def test_command_line_flags_become_overrides():
    args = build_parser().parse_args(
        [
            "run",
            "--orders",
            "5",
            "--time-scale",
            "0",
            "--replicas",
            "production=4,design=2",
            "--set",
            "quality.defect_rate=0.25",
            "--no-artifacts",
        ]
    )
    settings = load_settings(overrides_from(args))
    assert (settings.orders, settings.time_scale, settings.artifacts) == (5, 0, False)
    assert (settings.production.replicas, settings.design.replicas, settings.material.replicas) == (4, 2, 1)
    assert settings.stage_config(StageName.QUALITY).defect_rate == 0.25


def test_unknown_stage_in_replicas_is_refused_with_the_known_ones():
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown stage 'polishing'; stages are design"):
        _replicas("polishing=2")


def test_bad_settings_are_named():
    with pytest.raises(ValidationError, match=r"design\.replicas"):
        load_settings({"design": {"replicas": 0}})


def test_theoretical_limit_is_the_slowest_pool():
    settings = load_settings({"time_scale": 0.01})
    assert settings.theoretical_limit_per_s() == pytest.approx(50.0)  # production: 1 / (2.0 s x 0.01)
    scaled = load_settings({"time_scale": 0.01, "production": {"replicas": 4}, "design": {"replicas": 2}})
    assert scaled.theoretical_limit_per_s() == pytest.approx(100.0)  # now material and quality (1.0 s) bind
    assert load_settings({"time_scale": 0}).theoretical_limit_per_s() is None


def test_config_command_prints_the_effective_settings(capsys):
    assert main(["config", "--set", 'namespace="elsewhere"']) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["namespace"] == "elsewhere" and printed["production"]["duration_s"] == 2.0


def test_a_missing_input_file_exits_2_before_starting_anything(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nearest_rank_percentiles():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 50) == 0.0


def test_an_unreachable_ray_address_fails_fast_with_the_address(monkeypatch, capsys):
    from tests.support import free_port

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["run", "--orders", "3"]) == 3
    assert "cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:" in capsys.readouterr().err
    assert main(["status"]) == 3


def test_auto_and_client_addresses_are_left_to_ray_and_host_ports_are_probed(monkeypatch):
    import socket

    from orchestration.wiring import check_reachable

    probed = []

    def connect(address, timeout):
        probed.append(address)
        raise ConnectionRefusedError("nobody listens")

    monkeypatch.setattr(socket, "create_connection", connect)
    check_reachable("auto")
    check_reachable("ray://head:10001")
    check_reachable("http://127.0.0.1:8265")
    assert probed == []  # Ray resolves and reports these forms itself
    with pytest.raises(SystemStartError, match=r"RAY_ADDRESS=127\.0\.0\.1:6379"):
        check_reachable("127.0.0.1:6379")
    assert probed == [("127.0.0.1", 6379)]


@pytest.mark.parametrize("command", [["run"], ["replay", "J2025001"]])
def test_a_ledger_location_we_cannot_open_exits_2_for_every_command(command, capsys):
    assert main([*command, "--ledger", "mysql://db/jewelry"]) == 2
    assert "expected a file path, an sqlite:/// URL or a postgresql:// URL" in capsys.readouterr().err


def test_autoscaling_lays_slots_out_to_max_and_is_refused_where_it_would_lose_state(monkeypatch):
    monkeypatch.setenv("JEWELRY_PRODUCTION__AUTOSCALING__MAX_REPLICAS", "3")
    settings = load_settings({"design": {"replicas": 2}, "time_scale": 0.01})
    assert settings.production.slots == 3
    assert settings.theoretical_limit_per_s() == 100.0  # production at max: material and quality decide
    for stage in ("material", "packaging"):  # replicas share the workshop: these pools may scale too
        assert load_settings({stage: {"autoscaling": {"max_replicas": 2}}}).pool(StageName(stage)).slots == 2
    with pytest.raises(ValidationError, match=r"production\.autoscaling needs the ledger"):
        load_settings({"ledger": {"enabled": False}})
    with pytest.raises(ValidationError, match=r"production.replicas \(4\) must be within"):
        load_settings({"production": {"replicas": 4}})


def test_restock_adds_recorded_stock_to_the_ledger_in_the_lots_own_units(spec, capsys, closing):
    closing(open_ledger(spec)).seed_stock({"jade/A": 2, "metal/AU750": 1000})
    location = spec.url or str(spec.path)
    assert main(["restock", "jade/A=3", "metal/AU750=0.5", "--ledger", location, "--reason", "delivery 42"]) == 0
    assert "jade/A: +3 pcs, now 5 pcs" in capsys.readouterr().err
    ledger = closing(open_ledger(spec))
    assert ledger.inventory() == {"jade/A": 5, "metal/AU750": 1500} == ledger.stock_changes()
    assert main(["restock", "--ledger", location, "--json"]) == 0  # no lots: just show the stock
    assert json.loads(capsys.readouterr().out) == {"jade/A": 5, "metal/AU750": 1500}


@pytest.mark.parametrize(
    ("lot", "message"),
    [
        ("jade/A=1.5", "whole number of pieces"),
        ("metal/AU750=-2", "must be positive"),
        ("ruby=3", "expected metal/<hallmark>"),
        ("gem/ruby=lots", "is not a number of ct"),
    ],
)
def test_restock_refuses_an_amount_or_lot_it_cannot_record(tmp_path, lot, message, capsys):
    assert main(["restock", lot, "--ledger", str(tmp_path / "l.sqlite3")]) == 2
    assert message in capsys.readouterr().err


def test_restock_needs_an_existing_ledger(tmp_path, capsys):
    assert main(["restock", "jade/A=1", "--ledger", str(tmp_path / "none.sqlite3")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_ledger_is_bound_to_business_settings_not_to_replica_counts_or_stock(spec, closing):
    """Resume and replay may use other replica counts (replicas share the workshop) and other stock
    settings (a new ledger's initial stock); other business settings are refused."""
    ledger = closing(open_ledger(spec))
    ledger.bind(load_settings({"material": {"replicas": 1}}).stage_setup())
    ledger.bind(
        load_settings({"material": {"replicas": 4, "stock_multiplier": 3}, "packaging": {"replicas": 2}}).stage_setup()
    )
    with pytest.raises(LedgerMismatch, match="quality"):
        ledger.bind(load_settings({"quality": {"defect_rate": 0.5}}).stage_setup())


def test_dispatchers_flag_sets_the_number_of_shards():
    settings = load_settings(overrides_from(build_parser().parse_args(["run", "--dispatchers", "3"])))
    assert settings.control.dispatchers == 3
    assert load_settings().control.dispatchers == 1
