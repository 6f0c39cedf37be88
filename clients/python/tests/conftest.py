"""Fixtures that run a real deskd against a throw-away PostgreSQL database.

A session creates database ``deskd_py_<random>`` on 127.0.0.1:5432 (trust
auth, user ``postgres``), starts ``deskd serve`` on free ports (the binary is
``$DESKD_BIN``, else ``target/debug/deskd`` at the repository root), makes
tenants, users and tokens with the same binary's CLI, and at the end stops the
servers with SIGTERM and drops the database.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-X"]
START_TIMEOUT = 60.0


def _psql(sql: str) -> None:
    subprocess.run([*PG, "-d", "postgres", "-c", sql], check=True, capture_output=True, text=True)


def _find_addr(value: Any) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get("addr"), str):
            return str(value["addr"])
        for v in value.values():
            found = _find_addr(v)
            if found:
                return found
    return None


class Server:
    """One running ``deskd serve`` process."""

    def __init__(self, binary: str, env: Mapping[str, str]) -> None:
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [binary, "serve"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._ready = threading.Event()
        self.addr = ""
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT) or not self.addr:
            self.stop()
            tail = "\n".join(self.log[-30:])
            raise RuntimeError(f"deskd serve did not report its address:\n{tail}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            if not self.addr and "deskd serving gRPC" in line:
                try:
                    self.addr = _find_addr(json.loads(line)) or ""
                except json.JSONDecodeError:
                    pass
                self._ready.set()
        self._ready.set()  # the process ended

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Deskd:
    """The database, the CLI and the servers of one test session."""

    binary: str
    env: dict[str, str]
    servers: list[Server] = field(default_factory=list)

    def cli(self, *args: str) -> str:
        """Runs ``deskd <args>`` with the session's environment; returns stdout."""
        out = subprocess.run(
            [self.binary, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def serve(self, **extra_env: str) -> Server:
        server = Server(self.binary, {**self.env, **extra_env})
        self.servers.append(server)
        return server

    def tenant(self, name: str) -> str:
        return self.cli("tenant", "create", name)

    def user(self, tenant: str, role: str = "admin") -> str:
        email = f"{role}-{secrets.token_hex(4)}@example.test"
        return self.cli(
            "user", "create", "--tenant", tenant, "--email", email, "--role", role, "--name", email
        )

    def token(self, tenant: str, user: str) -> str:
        return self.cli("token", "mint", "--tenant", tenant, "--user", user, "--ttl", "1h")


@dataclass(frozen=True)
class Principal:
    """A user of a tenant with a JWT."""

    tenant: str
    user: str
    token: str


@dataclass(frozen=True)
class World:
    """Two tenants (A with an admin and an agent, B with an admin) and the
    address of the server with the default rate limits."""

    addr: str
    admin_a: Principal
    agent_a: Principal
    admin_b: Principal


@pytest.fixture(scope="session")
def deskd() -> Iterator[Deskd]:
    binary = os.environ.get("DESKD_BIN") or str(REPO / "target" / "debug" / "deskd")
    if not os.access(binary, os.X_OK):
        pytest.exit(f"deskd binary not found at {binary} (build it or set DESKD_BIN)", 2)
    db = f"deskd_py_{secrets.token_hex(6)}"
    _psql(f"create database {db}")
    exports = tempfile.mkdtemp(prefix="deskd-py-exports-")
    # deskd reads every DESKD_* variable as configuration and refuses unknown
    # ones (DESKD_BIN included): pass none of the caller's on.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DESKD_")}
    env = {
        **inherited,
        "DESKD_LISTEN_ADDR": "127.0.0.1:0",
        "DESKD_ADMIN_ADDR": "127.0.0.1:0",
        "DESKD_DATABASE_URL": f"postgres://deskd_app@127.0.0.1:5432/{db}",
        "DESKD_DATABASE_OWNER_URL": f"postgres://postgres@127.0.0.1:5432/{db}",
        "DESKD_JWT_SECRET": secrets.token_hex(32),
        "DESKD_LOG_FORMAT": "json",
        "DESKD_EXPORTS_DIR": exports,
    }
    d = Deskd(binary, env)
    try:
        yield d
    finally:
        for server in d.servers:
            server.stop()
        _psql(f"drop database if exists {db} with (force)")
        subprocess.run(["rm", "-rf", exports], check=False)


@pytest.fixture(scope="session")
def server(deskd: Deskd) -> Server:
    """deskd with its default configuration (also migrates the database)."""
    return deskd.serve()


@pytest.fixture(scope="session")
def world(deskd: Deskd, server: Server) -> World:
    def principal(tenant: str, role: str) -> Principal:
        user = deskd.user(tenant, role)
        return Principal(tenant, user, deskd.token(tenant, user))

    a = deskd.tenant(f"py-a-{secrets.token_hex(3)}")
    b = deskd.tenant(f"py-b-{secrets.token_hex(3)}")
    return World(server.addr, principal(a, "admin"), principal(a, "agent"), principal(b, "admin"))


@pytest.fixture(scope="session")
def limited_server(deskd: Deskd, server: Server) -> Server:
    """A second deskd on the same database whose people may make 3 requests
    per hour: the fourth is refused with RESOURCE_EXHAUSTED / RATE_LIMITED."""
    return deskd.serve(
        DESKD_RATE_LIMIT__PRINCIPAL__REQUESTS="3",
        DESKD_RATE_LIMIT__PRINCIPAL__BURST="3",
        DESKD_RATE_LIMIT__PRINCIPAL__PERIOD="1h",
    )


@pytest.fixture
def fresh_admin(deskd: Deskd, world: World) -> Principal:
    """A new admin of tenant A, with a rate-limit budget nobody has used."""
    user = deskd.user(world.admin_a.tenant, "admin")
    return Principal(world.admin_a.tenant, user, deskd.token(world.admin_a.tenant, user))


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
