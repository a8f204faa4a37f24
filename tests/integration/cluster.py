"""A real Ray cluster for tests: `ray start --head` on loopback, optional extra nodes, jobs via
the `ray` CLI, and a teardown that stops only this cluster's processes.

`ray stop` would stop every Ray on the machine (including the test session's own), so the
cluster gets its own temp dir and ports, and teardown signals exactly the processes whose
command line names them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
# Ray sets a runtime_env up three times before it gives up; a test of a dependency that cannot be
# fetched needs the first answer only.
RUNTIME_ENV_TRIES = "1"


def without_password(url: str) -> str:
    """A database URL as a job names it: the password comes from the nodes' libpq password file."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1@", url)


def auth_token() -> str:
    """The token `ray start` created for this machine's clusters (Ray 2.60 token auth)."""
    return (Path.home() / ".ray" / "auth_token").read_text().strip()


TERMINAL_JOB_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class LocalCluster:
    temp_dir: Path
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    metrics_ports: list[int] = field(default_factory=list)
    node_env: dict[str, str] = field(default_factory=dict)  # what every node's processes inherit
    started_at: float = 0.0  # time.time() when the head started
    nodes: int = 0  # besides the head

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """A client environment: the project's Python first on PATH, and the auth token sent."""
        # A job's working dir is unpacked afresh on each node, without our bytecode (`__pycache__` is
        # gitignored, so never uploaded): on a node that may not write it, every worker of the job would
        # compile our modules again. A cluster's nodes write it, as real ones do.
        dropped = {"RAY_ADDRESS", "PYTHONDONTWRITEBYTECODE"}
        env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("JEWELRY_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["RAY_AUTH_MODE"] = "token"
        env.update(extra)
        return env

    def _ray(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "ray"), *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def _node_ports(self) -> list[str]:
        """Ports of a node's own agents: two nodes on one machine must not both take the defaults."""
        metrics = free_port()
        self.metrics_ports.append(metrics)
        return [
            f"--metrics-export-port={metrics}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
        ]

    def start_head(self, num_cpus: int = 2, resources: dict[str, float] | None = None) -> None:
        self.started_at = time.time()
        proc = self._ray(
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            *self._node_ports(),
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={self.temp_dir}",
            f"--resources={json.dumps(resources or {})}",
            "--disable-usage-stats",
            env=self.env(RUNTIME_ENV_RETRY_TIMES=RUNTIME_ENV_TRIES, **self.node_env),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ray start --head failed:\n{proc.stdout}\n{proc.stderr}")

    def add_node(self, num_cpus: int, resources: dict[str, float]) -> None:
        """Another node on this machine, with its own temp dir: in the head's, both nodes' runtime-env
        agents unpacked a job's working dir into the same directory, and a driver's lazy import failed
        (ModuleNotFoundError) while the other node's agent was replacing the files under it."""
        self.nodes += 1
        node_dir = self.temp_dir / f"n{self.nodes}"
        proc = self._ray(
            "start",
            f"--address={self.gcs_address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={node_dir}",
            f"--resources={json.dumps(resources)}",
            *self._node_ports(),
            "--disable-usage-stats",
            env=self.env(RUNTIME_ENV_RETRY_TIMES=RUNTIME_ENV_TRIES, **self.node_env),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ray start --address failed:\n{proc.stdout}\n{proc.stderr}")

    def submit(self, *entrypoint: str, runtime_env: dict | None = None) -> str:
        args = ["job", "submit", "--address", self.dashboard_url, "--no-wait", "--working-dir", str(REPO)]
        if runtime_env:
            args += ["--runtime-env-json", json.dumps(runtime_env)]
        deadline = time.monotonic() + 60
        while True:
            proc = self._ray(*args, "--", *entrypoint)
            match = re.search(r"raysubmit_\w+", proc.stdout + proc.stderr)
            if proc.returncode == 0 and match:
                return match.group(0)
            # Right after `ray start` the head's job agent may not be up yet; Ray says to try again.
            if "try again later" not in proc.stdout + proc.stderr or time.monotonic() > deadline:
                raise RuntimeError(f"ray job submit failed:\n{proc.stdout}\n{proc.stderr}")
            time.sleep(2.0)

    def job_status(self, job_id: str) -> str:
        """The job's state from the dashboard's REST API (what `ray job status` asks): polling through the
        CLI started a Python process that imports Ray, about a second of CPU, every second."""
        request = urllib.request.Request(
            f"{self.dashboard_url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {auth_token()}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())["status"]
        except (OSError, ValueError, KeyError):
            return "UNKNOWN"  # the dashboard busy or restarting: ask again

    def wait_for_job(self, job_id: str, timeout_s: float = 300) -> str:
        def finished() -> str | None:
            status = self.job_status(job_id)
            return status if status in TERMINAL_JOB_STATES else None

        return wait_until(finished, timeout_s, interval_s=1.0, what=f"job {job_id} to finish")

    def job_logs(self, job_id: str) -> str:
        return self._ray("job", "logs", "--address", self.dashboard_url, job_id).stdout

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`python -m orchestration ...` as a client of this cluster."""
        return subprocess.run(
            [sys.executable, "-m", "orchestration", *args],
            env=self.env(RAY_ADDRESS=self.gcs_address),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def python(self, code: str) -> str:
        """Run a snippet as a driver on this cluster and return its stdout."""
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(RAY_ADDRESS=self.gcs_address),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return proc.stdout

    def stop(self) -> None:
        """SIGTERM then SIGKILL every process that names this cluster's temp dir or GCS port, and
        their descendants (the dashboard's forkserver children name neither)."""
        markers = (str(self.temp_dir), f":{self.gcs_port}", f"={self.gcs_port}")
        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.5)):
            for pid in self._pids(markers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(pause)

    @staticmethod
    def _pids(markers: tuple[str, ...]) -> list[int]:
        parents: dict[int, int] = {}
        marked: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if any(marker in cmdline for marker in markers):
                marked.add(int(entry.name))
        found, grew = set(marked), True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in found} - found
            found |= children
            grew = bool(children)
        return sorted(found)
