"""Where the database is (zip_etl.settings), and connections to it that fail with a message a
person can act on."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from zip_etl import settings

ETL_DATABASE = "zip_etl"
DAGSTER_DATABASE = "dagster"


class DatabaseError(RuntimeError):
    """A database problem explained in one line, naming the setting to fix.

    `retriable` says whether trying again later can help: a server that does not answer or dropped
    the connection (restarting, failing over) may be back in seconds; wrong credentials, a missing
    database or table, or a raw table with the wrong columns will not fix themselves.
    """

    def __init__(self, message: str, *, retriable: bool = False):
        super().__init__(message)
        self.retriable = retriable


def embedded_data_dir() -> Path:
    return settings.home() / "pgdata"


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def ensure_database(server_url: str, database: str) -> str:
    """Create `database` on the server of `server_url` if it is missing; return the URL of it."""
    with contextlib.closing(connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    pass  # another process created it first
    return _with_database(server_url, database)


@functools.cache
def _embedded_url(database: str) -> str:
    from zip_etl.db.embedded import start_embedded_server

    return ensure_database(start_embedded_server(embedded_data_dir()), database)


def etl_database_url() -> str:
    """URL of the ETL database: the user's, or the embedded server's (started on demand)."""
    return settings.database_url() or _embedded_url(ETL_DATABASE)


def dagster_database_url() -> str:
    """URL of Dagster's storage database, as libpq understands it."""
    return settings.dagster_database_url() or _embedded_url(DAGSTER_DATABASE)


def sqlalchemy_url(libpq_url: str) -> str:
    """Pin SQLAlchemy to psycopg2: SQLAlchemy 2.1 maps plain `postgresql://` to psycopg 3."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg2://", libpq_url)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _setting() -> str:
    return settings.DATABASE_URL if settings.database_url() else f"the embedded server in {embedded_data_dir()}"


def describe_connection_error(url: str, error: Exception, *, what: str = "PostgreSQL",
                              setting: str | None = None) -> DatabaseError:
    text = _first_line(error)
    retriable = False
    if "password authentication failed" in text or "authentication failed" in text:
        problem = "the server rejected the credentials"
    elif "does not exist" in text and ("database" in text or "role" in text):
        problem = "the database or role does not exist"
    elif "starting up" in text or "shutting down" in text or "in recovery mode" in text:
        problem, retriable = "the server is restarting", True
    elif "Connection refused" in text or "could not connect" in text or "No such file" in text:
        problem, retriable = "no PostgreSQL server answers there", True
    else:
        problem = "the connection failed"
    return DatabaseError(
        f"Cannot connect to {what} at {redact_url(url)}: {problem} ({text}). Check {setting or _setting()}.",
        retriable=retriable,
    )


def connect(url: str, *, application_name: str = "zip_etl") -> psycopg2.extensions.connection:
    """A psycopg2 connection, or a DatabaseError that names the problem and the setting to fix."""
    try:
        # UTC so timestamps leave COPY in one unambiguous form.
        return psycopg2.connect(url, application_name=application_name, options="-c timezone=UTC")
    except psycopg2.OperationalError as error:
        raise describe_connection_error(url, error) from None


class DagsterStorageError(DatabaseError, click.ClickException):
    """Dagster's storage cannot be reached: one line, also when Dagster's own CLI meets it.

    It is raised while Dagster builds its instance, so `dagster asset materialize`, `dagster dev`
    and the daemon print it the way they print a usage error (`Error: ...`, no traceback), and the
    zip-etl CLI like any other DatabaseError.
    """

    exit_code = 2

    def __init__(self, message: str, *, retriable: bool = False):
        DatabaseError.__init__(self, message, retriable=retriable)
        click.ClickException.__init__(self, message)


# A server that refuses connections may be restarting (a fast restart takes a second or two); one
# that rejects the credentials or lacks the database will not change its mind.
STORAGE_CHECK_SECONDS = 3.0
STORAGE_CONNECT_TIMEOUT_SECONDS = 10
_storage_checked: set[str] = set()


def check_dagster_storage(url: str, setting: str | None = None) -> None:
    """Connect once to Dagster's storage database before dagster-postgres does.

    dagster-postgres retries any failed connection for about 14 s and then raises
    `DagsterPostgresException: too many retries for DB connection` inside a long traceback, without
    saying which URL or setting is wrong. This fails first, in one line naming the setting, with the
    password masked: at once for wrong credentials or a missing database, after STORAGE_CHECK_SECONDS
    of retries when nothing answers (a server restarting). Checked once per process and URL.
    """
    if url in _storage_checked:
        return
    deadline = time.monotonic() + STORAGE_CHECK_SECONDS
    while True:
        try:
            # A URL's own connect_timeout wins; without one, an address that drops packets would
            # hold the connection attempt for minutes.
            timeout = {} if "connect_timeout" in url else {"connect_timeout": STORAGE_CONNECT_TIMEOUT_SECONDS}
            conn = psycopg2.connect(url, application_name="zip_etl_dagster_check", **timeout)
        except psycopg2.OperationalError as error:
            described = describe_connection_error(
                url, error, what="Dagster's storage (PostgreSQL)", setting=setting or settings.dagster_database_setting()
            )
            if not described.retriable or time.monotonic() >= deadline:
                raise DagsterStorageError(str(described), retriable=described.retriable) from None
            time.sleep(0.5)
        else:
            conn.close()
            _storage_checked.add(url)
            return


@contextlib.contextmanager
def transaction(url: str) -> Iterator[psycopg2.extensions.cursor]:
    """One transaction: committed when the block ends, rolled back (and nothing kept) on any error.

    A connection lost mid-transaction (server restarted, network cut, backend killed) becomes a
    retriable DatabaseError: the server rolls an unfinished transaction back, and zip_etl's writes
    replace whole partitions, so trying again is safe even if the break came during COMMIT.
    """
    conn = connect(url)
    try:
        with conn:  # commit on success, rollback on exception
            with conn.cursor() as cur:
                yield cur
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        if not (conn.closed or isinstance(error, psycopg2.errors.AdminShutdown)):
            raise
        raise DatabaseError(
            f"Lost the connection to PostgreSQL at {redact_url(url)} mid-transaction ({_first_line(error)}); "
            f"PostgreSQL keeps none of an unfinished transaction and a partition write replaces the partition "
            f"whole, so a retry is safe. Check that the server is up ({_setting()}).",
            retriable=True,
        ) from None
    finally:
        conn.close()
