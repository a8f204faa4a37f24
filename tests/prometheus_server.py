"""A real Prometheus for the tests: the distribution's server, on loopback, scraping a Ray cluster
through the service-discovery file that Ray's metrics agent keeps up to date.

`.ci/run` installs the `prometheus` package where it is missing; the binary is looked up on PATH,
then where Debian puts it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import Pending, free_port, wait_until

CANDIDATES = ("prometheus", "/usr/bin/prometheus")


def prometheus_binary() -> str:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("no prometheus binary: install the distribution's package (apt-get install prometheus)")


class PrometheusServer:
    """Scrapes the targets listed in `targets_file` (Ray's prom_metrics_service_discovery.json) every
    `scrape_interval_s`; its data lives in a temp dir removed by `close()`."""

    def __init__(
        self, targets_file: Path, port: int | None = None, scrape_interval_s: float = 2.0, loopback: bool = True
    ) -> None:
        self.port = port or free_port()
        self.started_at = time.time()
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config = self.dir / "prometheus.yml"
        # The shape of the config Ray writes to <session>/metrics/prometheus/prometheus.yml, scraped faster.
        # Watched by its real path: Ray replaces the file in the session dir, so a watch on the symlink
        # at the temp dir's top never fires, and Prometheus kept the first list (before a node joined)
        # for its default 5 minutes. The refresh is the backstop.
        scrape: dict[str, Any] = {
            "job_name": "ray",
            "file_sd_configs": [{"files": [str(Path(targets_file).resolve())], "refresh_interval": "5s"}],
        }
        if loopback:
            # Ray lists each node under the machine's own network address even when the node was started
            # with --node-ip-address=127.0.0.1; a cluster whose nodes all run here is scraped on loopback.
            scrape["relabel_configs"] = [
                {
                    "source_labels": ["__address__"],
                    "regex": r"[^:]+:(\d+)",
                    "target_label": "__address__",
                    "replacement": "127.0.0.1:$1",
                }
            ]
        config.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": f"{scrape_interval_s:g}s",
                        "evaluation_interval": f"{scrape_interval_s:g}s",
                    },
                    "scrape_configs": [scrape],
                }
            ),
            encoding="utf-8",
        )
        self._log = (self.dir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout_s=60, interval_s=0.5, what=f"prometheus on port {self.port} to be ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self._process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: Any) -> Any:
        """A GET on Prometheus's HTTP API; the `data` of a successful answer, else an error naming the query."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:  # a bad query: Prometheus says why in the body
            raise RuntimeError(f"prometheus {path} {params}: HTTP {error.code} {error.read().decode()[:500]}") from None
        if answer.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {answer}")
        return answer["data"]

    def targets(self) -> dict[str, str]:
        """Each discovered scrape URL, with its health ("up") or its last error."""
        return {
            t["scrapeUrl"]: "up" if t["health"] == "up" else f"{t['health']}: {t['lastError']}"
            for t in self.api("targets")["activeTargets"]
        }

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}s")[
            "result"
        ]

    def label_values(self, label: str, match: str) -> list[str]:
        return self.api(f"label/{label}/values", **{"match[]": match})

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_for_scrapes(self, urls: list[str], timeout_s: float = 60) -> list[str]:
        """Until every one of `urls` (scrape URLs) has been scraped and answered."""

        def all_up() -> list[str] | Pending:
            found = self.targets()
            missing = [url for url in urls if found.get(url) != "up"]
            return list(found) if not missing else Pending(f"not scraped yet: {missing}; targets: {found}")

        return wait_until(all_up, timeout_s, interval_s=1.0, what="prometheus to scrape every node")
