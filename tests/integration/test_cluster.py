"""Run it like Ray users do: a real two-node cluster on this machine, `ray job submit`, the
Prometheus endpoint, `ray list`, and the long-running mode driven by status / submit / stop."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from actors.intake.samples import generate_orders
from actors.ledger import LedgerSpec, open_ledger
from actors.models import STAGES
from orchestration.output import read_outcomes
from tests.integration.browser import actors_alive_on_the_dashboard
from tests.integration.cluster import REPO, LocalCluster, auth_token, without_password
from tests.prometheus_server import PrometheusServer
from tests.support import Pending, free_port, wait_until

# What the Actors page looks like, in the README. A run writes its screenshot to its temp dir, and
# over this figure only when asked (UPDATE_FIGURES=1): a test run never changes the checkout.
FIGURE = REPO / "docs" / "figures" / "ray-dashboard-actors.png"
CHART = REPO / "docs" / "figures" / "prometheus-orders-per-second.png"  # drawn from a real query (last test)
DESIGN_ON_SECOND_NODE = ["--replicas", "design=2", "--set", 'design.resources={"design_node": 1}']


@pytest.fixture(scope="module")
def prometheus_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cluster(postgres_server, prometheus_port):
    # Short on purpose: Ray's unix sockets live under the temp dir, and socket paths max out near 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="jf-", dir="/tmp"))
    # The database password reaches every actor as on a real cluster (cluster.yaml): a libpq password
    # file in the nodes' environment, never a URL, a command line or a log line.
    pgpass = temp_dir / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:*:postgres:{postgres_server.password}\n", encoding="utf-8")
    pgpass.chmod(0o600)
    # The dashboard's Metrics page asks the Prometheus started below (RAY_PROMETHEUS_HOST, read at start).
    # Metrics are exported every 2 s, not Ray's default 10 s: the metrics tests wait for exports and
    # scrapes several times over. Gauges stay live (Ray keeps a gauge two export intervals, 4 s; ours
    # are set every second).
    cluster = LocalCluster(
        temp_dir,
        node_env={
            "PGPASSFILE": str(pgpass),
            "RAY_PROMETHEUS_HOST": f"http://127.0.0.1:{prometheus_port}",
            "RAY_metrics_report_interval_ms": "2000",
        },
    )
    try:
        cluster.start_head(num_cpus=2)
        cluster.add_node(num_cpus=1, resources={"design_node": 4})
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def prometheus_started(cluster, prometheus_port):
    """A real Prometheus from the cluster's first minute to its last, scraping every node through the
    service-discovery file Ray's metrics agent writes (the file Ray's own Prometheus config names).
    Not waited for here: it finds the nodes while the first job runs."""
    server = PrometheusServer(cluster.temp_dir / "prom_metrics_service_discovery.json", port=prometheus_port)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def prometheus(cluster, prometheus_started):
    """The module's Prometheus, once it has scraped every node."""
    prometheus_started.wait_for_scrapes([f"http://127.0.0.1:{port}/metrics" for port in cluster.metrics_ports])
    return prometheus_started


@pytest.fixture(scope="module")
def job_run(cluster, postgres_server, tmp_path_factory):
    """One job as users submit it, on the PostgreSQL ledger, with design replicas asking for the
    second node's resource."""
    out = tmp_path_factory.mktemp("job-out")
    ledger_url = postgres_server.new_database()
    ledger = without_password(ledger_url)
    started = time.monotonic()
    job_id = cluster.submit(
        "python",
        "-m",
        "orchestration",
        "run",
        "--orders",
        "300",
        "--time-scale",
        "0.01",
        "--out",
        str(out),
        "--ledger",
        ledger,
        "--json",
        *DESIGN_ON_SECOND_NODE,
    )
    status = cluster.wait_for_job(job_id)
    return {
        "job_id": job_id,
        "status": status,
        "out": out,
        "seconds": time.monotonic() - started,
        "logs": cluster.job_logs(job_id),
        "ledger_url": ledger_url,
        "password": postgres_server.password,
    }


def test_a_submitted_job_succeeds_and_its_outcomes_are_read(job_run):
    assert job_run["status"] == "SUCCEEDED", job_run["logs"][-3000:]
    outcomes = read_outcomes(job_run["out"] / "outcomes.jsonl")
    assert len(outcomes) == 300 and all(o.status == "completed" for o in outcomes)
    summary = json.loads(
        next(line for line in job_run["logs"].splitlines() if line.startswith("{") and '"orders_total"' in line)
    )
    assert summary["completed"] == 300
    print(f"job submission round trip: {job_run['seconds']:.1f} s")  # reported in the closing note


def test_the_job_kept_its_ledger_in_postgresql_and_no_actor_opened_an_sqlite_file(cluster, job_run):
    # The job named its database without a password (its driver and actors read it from the nodes'
    # password file); every outcome and every stage's effect is there.
    ledger = open_ledger(LedgerSpec.from_location(job_run["ledger_url"]))
    try:
        recorded = ledger.outcomes([o.order_id for o in read_outcomes(job_run["out"] / "outcomes.jsonl")])
        assert len(recorded) == 300 and {o.status for o in recorded.values()} == {"completed"}
        assert all(len(ledger.effects_of(stage)) == 300 for stage in STAGES)
    finally:
        ledger.close()
    sqlite_files = [
        p
        for root in (job_run["out"], cluster.temp_dir, REPO)
        for p in root.rglob("*.sqlite3*")
        if p.stat().st_mtime >= cluster.started_at
    ]
    assert sqlite_files == []
    assert job_run["password"] not in job_run["logs"]


def test_replicas_really_ran_on_both_nodes(cluster, job_run):
    nodes = json.loads(
        cluster.python(
            "import json, ray; ray.init(); "
            "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))"
        )
    )
    second = next(node for node, resources in nodes.items() if "design_node" in resources)
    outcomes = read_outcomes(job_run["out"] / "outcomes.jsonl")
    by_stage = defaultdict(set)
    for outcome in outcomes:
        for stage, result in outcome.results.items():
            by_stage[stage].add(result.node_id)
    assert by_stage["design"] == {second}  # the custom resource put both design replicas there
    assert set().union(*by_stage.values()) == set(nodes)  # and the spread stages used both nodes


def test_a_bad_argument_ends_the_job_failed_with_the_reason_in_its_logs(cluster):
    job_id = cluster.submit("python", "-m", "orchestration", "run", "--replicas", "polishing=2")
    assert cluster.wait_for_job(job_id) == "FAILED"
    assert "unknown stage 'polishing'" in cluster.job_logs(job_id)


def test_an_unreachable_dependency_ends_the_job_failed_with_the_reason(cluster):
    # A package the job needs, on a server nobody answers on. (A pip requirement that does not exist
    # fails the same way, after Ray has built a virtualenv for it: 20 s here for the same answer.)
    job_id = cluster.submit(
        "python",
        "-m",
        "orchestration",
        "run",
        "--orders",
        "5",
        runtime_env={"py_modules": ["https://127.0.0.1:1/jewelry-fanout-extras.zip"]},
    )
    assert cluster.wait_for_job(job_id, timeout_s=120) == "FAILED"
    # The driver never starts, so Ray puts the reason in the job's status message, not its logs.
    status = cluster._ray("job", "status", "--address", cluster.dashboard_url, job_id).stdout
    assert "runtime_env setup failed" in status and "jewelry-fanout-extras.zip" in status


def _scrape(ports: list[int]) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    pattern = re.compile(r"^(ray_jewelry_\w+)(?:\{(.*)\})? ([0-9.eE+-]+)$")
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                match = pattern.match(line)
                if match:
                    labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
                    samples[match.group(1)].append((labels, float(match.group(3))))
    return samples


def _total(samples, name, **labels) -> float:
    return sum(value for tags, value in samples.get(name, []) if all(tags.get(k) == v for k, v in labels.items()))


def test_application_metrics_reach_the_prometheus_endpoint(cluster, job_run, tmp_path):
    # A second job with stage timeouts (so retries happen) and bad records (so rejects happen). Without a
    # ledger, orders whose stage still errors after its retries fail and are compensated at once (with one,
    # they would be dead-lettered for replay and the job would end with exit code 4). Production takes 1 s
    # an order against a 20 ms timeout: a retry sent while the first call still runs queues behind it and
    # times out too. (At 0.1 s an order, a retry that a busy machine sent late found the first call done
    # and its result recorded, and the order completed: 3 failures instead of 4, one CI run in three.)
    job_id = cluster.submit(
        "python",
        "-m",
        "orchestration",
        "run",
        "--input",
        "examples/orders.jsonl",
        "--time-scale",
        "0.05",
        "--out",
        str(tmp_path / "job2"),
        "--no-ledger",
        "--set",
        "production.duration_s=20",
        "--set",
        "production.timeout_s=0.02",
        "--set",
        'production.retry={"attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02}',
        # Its 4 orders make 8 production calls, every one failing: the 8th answer opens the breaker, so the
        # transition is counted and every retry was already sent.
        "--set",
        'production.breaker={"minimum_calls": 8, "window": 8}',
    )
    assert cluster.wait_for_job(job_id) == "SUCCEEDED", cluster.job_logs(job_id)[-3000:]
    # Counters and histograms outlive the job's actors. Gauges do not: Ray 2.60's metrics agent drops a
    # gauge series that has not been refreshed for two export intervals (about 20 s; its OpenTelemetry
    # recorder's gauge TTL), so a finished job's in-flight and queue-depth gauges are gone by the time a
    # slow machine scrapes. They are live values, checked while a system runs (the serve-mode test).
    wanted = {
        "ray_jewelry_orders_total",
        "ray_jewelry_order_latency_ms_count",
        "ray_jewelry_stage_call_latency_ms_bucket",
        "ray_jewelry_stage_results_total",
        "ray_jewelry_stage_retries_total",
        "ray_jewelry_rejected_records_total",
        "ray_jewelry_compensations_total",
        "ray_jewelry_breaker_transitions_total",
    }

    def exported():  # the metrics agent exports about every 10 s
        found = _scrape(cluster.metrics_ports)
        failed = _total(found, "ray_jewelry_orders_total", status="failed")
        return (
            found
            if wanted <= set(found) and failed >= 4
            else Pending(f"{sorted(wanted - set(found))}, failed {failed}")
        )

    samples = wait_until(exported, timeout_s=90, interval_s=3, what="every counter and histogram on the endpoint")
    assert _total(samples, "ray_jewelry_orders_total", status="completed") >= 300
    assert _total(samples, "ray_jewelry_orders_total", status="failed") >= 4  # job 2: production timed out
    assert _total(samples, "ray_jewelry_stage_retries_total", stage="production") >= 4
    assert _total(samples, "ray_jewelry_rejected_records_total") >= 2
    for stage in ("material", "packaging", "logistics"):  # each failed order's completed work was undone
        assert _total(samples, "ray_jewelry_compensations_total", stage=stage) >= 4
    assert _total(samples, "ray_jewelry_stage_results_total", stage="design", status="ok") >= 300
    assert _total(samples, "ray_jewelry_breaker_transitions_total", stage="production", state="open") >= 1
    latency = {tags["replica"] for tags, _ in samples["ray_jewelry_stage_call_latency_ms_bucket"]}
    assert {"design-0", "design-1", "production-0", "material-0"} <= latency


def _latency_counts(prometheus) -> dict[str, float]:
    """Orders each Dispatcher worker has observed in its latency histogram, as Prometheus last scraped it."""
    answer = prometheus.api("query", query="ray_jewelry_order_latency_ms_count")["result"]
    return {series["metric"]["WorkerId"]: float(series["value"][1]) for series in answer}


def test_serve_mode_with_status_submit_and_stop(cluster, postgres_server, prometheus, tmp_path):
    namespace = "serve-test"
    # Ray tags every series with the worker that records it, and Prometheus's rate() cannot see the
    # increase that brings a series into being: a Dispatcher whose orders all reach one metrics export
    # leaves latency panels empty (NaN). The serving Dispatcher is therefore seen twice by Prometheus:
    # with its first 40 orders, then with the 4 submitted ones (the Grafana query test reads that).
    earlier_workers = set(_latency_counts(prometheus))
    out = tmp_path / "serve"
    ledger_url = postgres_server.new_database()
    http_port = free_port()  # the front door, on the head node's loopback
    job_id = cluster.submit(
        "python",
        "-m",
        "orchestration",
        "run",
        "--serve",
        "--http",
        str(http_port),
        "--orders",
        "40",
        "--time-scale",
        "0.01",
        "--out",
        str(out),
        "--ledger",
        without_password(ledger_url),
        "--set",
        f"namespace={namespace}",
        runtime_env={"env_vars": {"JEWELRY_HTTP__API_KEYS": json.dumps([HTTP_KEY])}},
    )
    front_door = f"http://127.0.0.1:{http_port}"

    def status() -> dict:
        proc = cluster.cli("status", "--json", "--set", f"namespace={namespace}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    # Progress is read from the run's ledger, a query; each `status` (and `ray list`) is a new Python
    # process that imports Ray and joins the cluster, a second or two of CPU: asked once per check.
    def concluded(count: int) -> None:
        def enough() -> bool:
            try:
                with open_ledger(LedgerSpec.from_location(ledger_url)) as ledger:
                    return sum(ledger.outcome_counts().values()) >= count
            except FileNotFoundError:  # the driver has not created the ledger yet
                return False

        wait_until(enough, timeout_s=120, interval_s=0.5, what=f"{count} orders concluded")

    concluded(40)
    first = status()
    assert sum(d["orders_done"] for d in first["dispatchers"]) == 40
    assert first["producer"]["serving"] and set(first["snapshots"]) == {
        "material",
        "design",
        "production",
        "quality",
        "packaging",
        "logistics",
    }
    assert first["snapshots"]["packaging"][0]["state"]["serials_issued"] == 40

    listed = cluster._ray(
        "list", "actors", "--format", "json", "--limit", "200", env=cluster.env(RAY_ADDRESS=cluster.gcs_address)
    ).stdout
    names = {a["name"] for a in json.loads(listed) if a.get("ray_namespace") == namespace and a["state"] == "ALIVE"}
    ours = [
        "producer",
        "dispatcher-0",
        "material-0",
        "design-0",
        "production-0",
        "quality-0",
        "packaging-0",
        "logistics-0",
    ]
    assert set(ours) <= names
    # The same, as an operator sees it: the dashboard in Chromium, logged in through its token dialog.
    screenshot = tmp_path / FIGURE.name
    seen = actors_alive_on_the_dashboard(cluster.dashboard_url, auth_token(), ours, screenshot)
    assert all("ALIVE" in row for row in seen.values()) and screenshot.stat().st_size > 0
    if os.environ.get("UPDATE_FIGURES") == "1":
        shutil.copyfile(screenshot, FIGURE)
    # Stage calls are named after their stage and how many orders they carry ("material[1]",
    # "material[4-7]"), never after an order: Ray keeps a metric series per task name for good. Task
    # events reach the GCS a moment after the call, so look again for a while.
    named = {
        stage: re.compile(rf"^{stage}\[\d+(-\d+)?\]$")
        for stage in ("material", "design", "production", "quality", "packaging", "logistics")
    }

    def finished_task_names():
        listed = cluster._ray(
            "list",
            "tasks",
            "--format",
            "json",
            "--limit",
            "10000",
            "--filter",
            "state=FINISHED",
            env=cluster.env(RAY_ADDRESS=cluster.gcs_address),
        ).stdout
        found = {t["name"] for t in json.loads(listed)} if listed.lstrip().startswith("[") else set()
        if all(any(p.match(n) for n in found) for p in named.values()):
            return found
        return Pending(f"finished tasks so far: {sorted(found)[:20]}")

    names = wait_until(finished_task_names, timeout_s=30, interval_s=3, what="a batch-named task per stage")

    # The system is up: its gauges are live on the metrics endpoint, one queue depth per replica.
    def gauges():
        found = _scrape(cluster.metrics_ports)
        replicas = {tags.get("replica") for tags, _ in found.get("ray_jewelry_stage_ongoing_calls", [])}
        breakers = {tags.get("stage") for tags, _ in found.get("ray_jewelry_breaker_state", [])}
        if (
            found.get("ray_jewelry_orders_in_flight")
            and {f"{s}-0" for s in named} <= replicas
            and set(named) <= breakers
        ):
            return found
        return Pending(f"in-flight series {found.get('ray_jewelry_orders_in_flight')}, queue depths of {replicas}")

    live = wait_until(gauges, timeout_s=60, interval_s=2, what="the in-flight and queue-depth gauges")
    assert all(0 <= value <= 100 for _, value in live["ray_jewelry_orders_in_flight"])  # max_in_flight
    assert {value for _, value in live["ray_jewelry_breaker_state"]} == {0.0}  # every breaker closed
    assert not [n for n in names if re.search(r"J\d{7}", n)], "a task named after an order"

    def serving_latency_scraped(at_least: int):
        def check():
            counts = {
                worker: count for worker, count in _latency_counts(prometheus).items() if worker not in earlier_workers
            }
            return counts if any(count >= at_least for count in counts.values()) else Pending(f"serving: {counts}")

        return check

    wait_until(serving_latency_scraped(40), timeout_s=60, interval_s=2, what="Prometheus to scrape 40 orders' latency")
    # Orders over HTTP as well, to the job's front door, twice (so that rate() sees its answers grow).
    posted = _post_orders(front_door, namespace, first=0, count=1)
    submitted = cluster.cli("submit", "--input", "examples/orders.csv", "--set", f"namespace={namespace}")
    assert submitted.returncode == 0 and "4 accepted, 1 rejected" in submitted.stderr, submitted.stderr
    concluded(45)
    wait_until(serving_latency_scraped(45), timeout_s=60, interval_s=2, what="Prometheus to scrape 45 orders' latency")
    posted += _post_orders(front_door, namespace, first=1, count=3)
    concluded(48)
    http_status = status()["producer"]["http"]
    assert http_status["answers"] == {"accepted": 4} and http_status["queued"] == 0, http_status
    for order_id in posted:
        view = urllib.request.urlopen(_api(f"{front_door}/v1/orders/{order_id}"), timeout=10)
        assert json.loads(view.read())["status"] == "completed"
    assert cluster.cli("stop", "--set", f"namespace={namespace}").returncode == 0
    assert cluster.wait_for_job(job_id) == "SUCCEEDED"
    outcomes = read_outcomes(out / "outcomes.jsonl")
    assert len(outcomes) == 48 and Counter(o.status for o in outcomes) == {"completed": 48}
    assert set(posted) <= {o.order_id for o in outcomes}
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["source"], r["line"], r["errors"][0]["field"]) for r in rejects] == [("orders.csv", 6, "size")]


HTTP_KEY = "cluster-test-key"


def _api(url: str, body: object = None, key: str = "") -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {HTTP_KEY}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")


def _post_orders(front_door: str, namespace: str, first: int, count: int) -> list[str]:
    """`count` new orders posted in one batch to the job's front door; their ids."""
    orders = list(generate_orders(first + count + 3, seed=17))[3 + first :]  # not the 40 generated ones' ids
    bodies = [{**o.model_dump(mode="json"), "order_id": f"J77{first + i:05d}"} for i, o in enumerate(orders)]
    request = _api(f"{front_door}/v1/orders:batch", {"orders": bodies}, key=f"{namespace}-{first}")
    with urllib.request.urlopen(request, timeout=30) as response:
        results = json.loads(response.read())["results"]
    assert [r["status"] for r in results] == ["accepted"] * count, results
    return [r["order_id"] for r in results]


DASHBOARD = REPO / "dashboards" / "jewelry_fanout_grafana_dashboard.json"


def test_every_grafana_query_returns_series_on_a_real_prometheus(cluster, prometheus, tmp_path):
    """Last in the module: by now Prometheus has scraped a job that completed 300 orders, one with
    failures, retries, compensations and rejects, and a serving system whose gauges were live. Every
    panel's PromQL, with the dashboard's template variable filled in as Grafana fills it, is evaluated
    over that time and must return a series with a value."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"]).groups()
    sessions = prometheus.label_values(label, metric)
    assert len(sessions) == 1, sessions  # this cluster's session
    # What Grafana puts in for a selection: each value regex-escaped inside a PromQL string, joined by |.
    chosen = "|".join(re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\\\1", value) for value in sessions)
    end = time.time()
    empty, found = [], {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace(f"${variable['name']}", chosen)
            assert "$" not in expr, expr
            series = prometheus.query_range(expr, start=prometheus.started_at, end=end, step_s=2)
            found[expr] = len(series)
            if not any(math.isfinite(float(value)) for s in series for _, value in s["values"]):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "\n".join(empty)
    print("series per dashboard query:", json.dumps(found, indent=1))  # reported in the closing note

    # The dashboard's first panel, drawn from the same real query: the operations page shows it.
    first = dashboard["panels"][0]
    expr = first["targets"][0]["expr"].replace(f"${variable['name']}", chosen)
    chart = tmp_path / CHART.name
    drawn = _chart(prometheus.query_range(expr, start=prometheus.started_at, end=end, step_s=2), first["title"], chart)
    assert drawn >= 1 and chart.stat().st_size > 10_000
    if os.environ.get("UPDATE_FIGURES") == "1":
        shutil.copyfile(chart, CHART)

    # And Ray's dashboard finds the same Prometheus (its Metrics page shows charts instead of a notice).
    request = urllib.request.Request(
        f"{cluster.dashboard_url}/api/prometheus_health", headers={"Authorization": f"Bearer {auth_token()}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["result"] is True


def _chart(series: list[dict], title: str, path: Path) -> int:
    """The series of a Prometheus range query as a line chart, one line per label set; how many."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.2))
    start = min(float(t) for s in series for t, _ in s["values"])
    drawn = 0
    for found in series:
        points = [(float(t) - start, float(v)) for t, v in found["values"] if math.isfinite(float(v))]
        if points:
            label = ", ".join(f"{k}={v}" for k, v in found["metric"].items()) or "all"
            axes.plot(*zip(*points, strict=True), label=label)
            drawn += 1
    axes.set_title(f"{title} (Prometheus, a test cluster's runs)")
    axes.set_xlabel("seconds since the first sample")
    axes.set_ylabel("orders / s")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return drawn
