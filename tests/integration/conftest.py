"""One real local Ray for the whole session; each test starts its own system in its own namespace.

Every test here is marked `integration` by the hook in tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray

from actors.ledger import open_ledger
from orchestration.settings import FanoutSettings, load_settings
from orchestration.system import FanoutSystem
from tests.integration.parked import ParkedSystems

# The session's Ray has no dashboard and sends no worker logs to the driver, yet its log monitor
# globs the log directory every 0.1 s and its node reporter walks every process every 5 s: together
# a visible share of a suite run's CPU (read from /proc), time the two cores owe the tests. Slowed
# down, for this Ray only (its processes read these at start; later clusters get the defaults).
QUIET_SESSION_RAY = {
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
}


SESSION_CPUS = 8


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in QUIET_SESSION_RAY.items():
            env.setenv(name, value)
        # address="local": never attach to some other cluster running on this machine. Logical CPUs
        # are what actors reserve (0.1 each by default), not cores: eight let parked systems (see
        # parked.py) stay up beside a test's own.
        ray.init(address="local", num_cpus=SESSION_CPUS, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def settings_for(tmp_path):
    def build(**overrides: Any) -> FanoutSettings:
        base = {
            "namespace": f"test-{uuid.uuid4().hex[:8]}",
            "time_scale": 0.0,
            "out_dir": str(tmp_path / "out"),
            "log_level": "WARNING",
        }
        return load_settings({**base, **overrides})

    return build


@pytest.fixture(scope="session")
def parked_systems(ray_session) -> Iterator[ParkedSystems]:
    parked = ParkedSystems()
    yield parked
    parked.shutdown()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report kept on the test, so that its fixtures know whether it passed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class SystemStarter:
    """`start_system`'s value: called, it starts a system for the test (or renews a parked one);
    `done(system)` hands one back before the test ends, parked at once when its actors are intact,
    so that the test's next start can renew it."""

    def __init__(self, parked: ParkedSystems, settings_for: Callable[..., FanoutSettings], renewable: bool) -> None:
        self.parked, self.settings_for, self.renewable = parked, settings_for, renewable
        self.started: list[FanoutSystem] = []

    def __call__(self, **overrides: Any) -> FanoutSystem:
        settings = self.settings_for(**overrides)
        system = self.parked.start(settings, renewable=self.renewable and "namespace" not in overrides)
        self.started.append(system)
        return system

    def done(self, system: FanoutSystem) -> None:
        self.started.remove(system)
        self.parked.stop(system)


@pytest.fixture
def start_system(parked_systems, settings_for, request):
    """Starts a system for the test, or renews a parked one with the same Ray options (tests/
    integration/parked.py); parks it again after a test that passed, else shuts it down."""
    starter = SystemStarter(parked_systems, settings_for, request.node.get_closest_marker("restarts_actors") is None)
    yield starter
    passed = getattr(request.node, "report_call", None) is not None and request.node.report_call.passed
    for system in starter.started:
        if passed:
            parked_systems.stop(system)
        else:
            system.shutdown()


@pytest.fixture
def ledger_of():
    """The ledger of a started system, opened as any reader would (from its settings), for audits."""
    opened = []

    def open_for(system: FanoutSystem) -> Any:
        ledger = open_ledger(system.settings.ledger_spec())
        opened.append(ledger)
        return ledger

    yield open_for
    for ledger in opened:
        ledger.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request) -> dict[str, Any]:
    """The `ledger` settings of a run on each store: the embedded SQLite file, or a new database on
    the session's real PostgreSQL server."""
    if request.param == "sqlite":
        return {}
    return {"location": request.getfixturevalue("postgres_url")}
