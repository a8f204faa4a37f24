"""A real PostgreSQL server for the tests: initdb in a temp dir, on loopback, on a free port.

`initdb` refuses to run as root, and CI runs as root, so the server is run as the `postgres` user
when the tests run as root. Debian keeps the server binaries off PATH, in
/usr/lib/postgresql/<version>/bin; `.ci/run` installs the package where it is missing.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import free_port, wait_until


def server_binaries() -> Path | None:
    """The directory with the server's tools: the newest Debian versioned one, else where `initdb`
    is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """One throwaway cluster; `url` is what `--ledger` takes. fsync is off: these tests crash
    processes and servers, never the machine, and the OS keeps what was written. Commits stay
    synchronous (`synchronous_commit=off` would lose the last commits when the server crashes, which
    is what the crash tests do and what the ledger's promises rule out)."""

    def __init__(self) -> None:
        bin_dir = server_binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self._bin = bin_dir
        self._root = Path(tempfile.mkdtemp(prefix="jewelry-pg-"))
        self.data = self._root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self._root, "postgres", "postgres")
        # TCP clients (every actor, psql here) authenticate with a password, as on a real cluster.
        self.password = secrets.token_hex(12)
        pwfile = self._root / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "jewelry")
        self.url = f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/jewelry"

    def new_database(self) -> str:
        """A new, empty database on this server; its URL."""
        name = f"db_{secrets.token_hex(6)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self._root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self._root / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        """Stop the server the way a crash would (`immediate`: no checkpoint, recovery on start) and
        start it again on the same port."""
        self.stop(mode)
        self.start()
        wait_until(lambda: self._ready(), 30, 0.2, "the restarted server accepting connections")

    def psql(self, sql: str) -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "jewelry", "-At", "-c", sql
        )

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def _ready(self) -> bool:
        done = subprocess.run(
            [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return done.returncode == 0

    def _run(self, tool: str, *args: str) -> str:
        command = [str(self._bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {**os.environ, "PGPASSWORD": getattr(self, "password", "")}
        done = subprocess.run(command, capture_output=True, text=True, cwd=self._root, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout
