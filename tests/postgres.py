"""A throwaway PostgreSQL server for tests (loaded by tests/conftest.py as a pytest plugin).

`postgres_server` (session scope) runs `initdb` into a temporary folder (trust
auth for the superuser `hypercl`), starts the cluster with `pg_ctl` on a free
loopback port with fsync off, and stops and deletes it at the end of the
session. Its `url()` creates a new, empty database each call and returns
`postgresql://hypercl@127.0.0.1:<port>/<name>`, so one test can ask for two
databases (e.g. one for MLflow, one for the Optuna study). `postgres_url` is
the per-test shorthand: one fresh database.

initdb refuses to run as root; as root the server runs as the `postgres` user
(created by Debian's postgresql package) through runuser/su. Without the
PostgreSQL binaries the tests that use it skip with one line naming the
package; with CI=true they fail instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "hypercl"
INSTALL_HINT = "apt-get install postgresql"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str):
    """Skip locally; under CI a missing PostgreSQL is a failure, not a silent skip."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def find_pg_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: $HYPERCL_PG_BINDIR, the PATH, or Debian's versioned folders."""
    candidates = []
    if os.environ.get("HYPERCL_PG_BINDIR"):
        candidates.append(Path(os.environ["HYPERCL_PG_BINDIR"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
    candidates.extend(Path(p) for p in reversed(debian))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway cluster; `url()` hands out fresh databases on it."""

    host: str
    port: int
    root: Path
    user: str = SUPERUSER
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def connect(self, dbname: str = "postgres", autocommit: bool = False):
        import psycopg  # noqa: PLC0415

        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, connect_timeout=5,
                               autocommit=autocommit)

    def url(self, dbname: str | None = None) -> str:
        """Create an empty database (a new unique name by default) and return its URL.

        An explicit name that already exists is dropped and created again, so the
        database is always fresh.
        """
        name = dbname or f"test_{next(self._counter)}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        # autocommit: CREATE/DROP DATABASE cannot run inside a transaction
        with self.connect(autocommit=True) as conn, conn.cursor() as cur:
            if dbname:  # WITH (FORCE): PostgreSQL 13+, ends sessions still connected to it
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}@{self.host}:{self.port}/{name}"


class _Cluster:
    """initdb + pg_ctl in a temporary folder, as an unprivileged user when we are root."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.as_user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root and there is no 'postgres' user to run initdb as; "
                             f"{INSTALL_HINT} creates it (or run the tests as a normal user)")
            self.as_user = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="hypercl-pg-"))
        if self.as_user:
            entry = pwd.getpwnam(self.as_user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _cmd(self, *args: str) -> list[str]:
        if not self.as_user:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", self.as_user, "--", *args]
        import shlex  # noqa: PLC0415

        return ["su", self.as_user, "-s", "/bin/sh", "-c", shlex.join(args)]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(*args), cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def initdb(self) -> None:
        done = self.run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def start(self, port: int) -> bool:
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        done = self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                        "-w", "-t", "30", "start")
        return done.returncode == 0

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_until_accepting(server: PostgresServer, timeout: float = 20) -> None:
    import psycopg  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        try:
            server.connect().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session; `.url()` gives a fresh database URL."""
    bindir = find_pg_bindir()
    if bindir is None:
        _unavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found; install them: {INSTALL_HINT}")
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        _unavailable("the PostgreSQL driver psycopg (3) is missing; pip install 'psycopg[binary]' (or pip install -e .)")

    cluster = _Cluster(bindir)
    try:
        cluster.initdb()
        for _attempt in range(3):  # the free port can be taken between the probe and the bind
            port = _free_port()
            if cluster.start(port):
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start; server log:\n{cluster.log_tail()}")
        server = PostgresServer(host="127.0.0.1", port=port, root=cluster.root)
        _wait_until_accepting(server)
        yield server
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """One fresh database on the session's server."""
    return postgres_server.url()
