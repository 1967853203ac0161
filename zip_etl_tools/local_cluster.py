"""The Celery deployment of docs/DEPLOYMENT.md, started on one machine: for its test and benchmark.

Real pieces, as on N machines: `redis-server` (broker and result backend), `dagster dev` (webserver
and daemon: run queue, backfills, run monitoring, run retries) with deploy/celery/dagster.yaml, and
worker processes started with `dagster-celery worker start`. When this process may create network
namespaces (root, `ip netns`), each worker is its own "host": its own network namespace with its own
address on a veth link, its own hostname (UTS namespace), reaching Redis over TCP at the address of
the other end of its link. Otherwise the workers are processes on loopback. With
`own_database=True` (the tests) the cluster also starts a PostgreSQL server listening on TCP at
those addresses, and every piece reaches it over TCP with a password, as on real machines;
otherwise every piece uses the database URLs it is given (the benchmark: the configured server).

Launching a backfill goes through the webserver's GraphQL API, as the UI does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from zip_etl import settings
from zip_etl_tools.dagster_dev import running_dagster_dev
from zip_etl_tools.tcp_postgres import TcpPostgres, free_port

DEPLOY_DIR = settings.project_root() / "deploy" / "celery"
BROKER_URL_ENV = "ZIP_ETL_CELERY_BROKER_URL"
MAX_CONCURRENT_RUNS_ENV = "ZIP_ETL_MAX_CONCURRENT_RUNS"



def _bin(name: str) -> str:
    """An executable of this virtualenv (dagster, dagster-celery, celery), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def namespaces_available() -> bool:
    """Whether this process may create network namespaces (root and a working `ip netns`)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        return False
    probe = f"zetl-probe-{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError):
        return False
    with contextlib.suppress(subprocess.CalledProcessError):
        _run("ip", "netns", "del", probe)
    return True


@dataclass
class Host:
    """Where one worker runs: a network namespace with its own address, or plain loopback."""

    name: str
    netns: str | None = None
    address: str = "127.0.0.1"  # the worker's own address
    gateway: str = "127.0.0.1"  # the address at which it reaches the services (Redis)

    def command(self, argv: list[str]) -> list[str]:
        if self.netns is None:
            return argv
        # Its own network namespace and hostname: a separate machine, as far as the network goes.
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', self.name, *argv]


class Network:
    """One veth link per worker host, between this machine (x.x.k.1) and the host's namespace (x.x.k.2)."""

    def __init__(self, hosts: int):
        self.tag = f"{os.getpid() % 100000:05d}"
        used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
        self.prefix = next(f"10.{n}" for n in range(200, 250) if f" 10.{n}." not in used)
        self.hosts: list[Host] = []
        self._count = hosts

    def __enter__(self) -> list[Host]:
        try:
            for k in range(1, self._count + 1):
                netns, outside, inside = f"zetl{self.tag}w{k}", f"zv{self.tag}h{k}", f"zv{self.tag}w{k}"
                gateway, address = f"{self.prefix}.{k}.1", f"{self.prefix}.{k}.2"
                _run("ip", "netns", "add", netns)
                self.hosts.append(Host(f"zip-etl-worker-{k}", netns, address, gateway))
                _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
                _run("ip", "link", "set", inside, "netns", netns)
                _run("ip", "addr", "add", f"{gateway}/24", "dev", outside)
                _run("ip", "link", "set", outside, "up")
                _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{address}/24", "dev", inside)
                _run("ip", "netns", "exec", netns, "ip", "link", "set", inside, "up")
                _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.hosts

    def __exit__(self, *exc) -> None:
        for k, host in enumerate(self.hosts, start=1):
            # Deleting one end of a veth pair deletes both.
            subprocess.run(["ip", "link", "del", f"zv{self.tag}h{k}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)


class Redis:
    """redis-server on a free port, bound to loopback and the workers' gateways, with a password."""

    def __init__(self, addresses: list[str], workdir: Path):
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.addresses = list(dict.fromkeys(["127.0.0.1", *addresses]))
        self.workdir = workdir

    def url(self, address: str = "127.0.0.1") -> str:
        return f"redis://:{self.password}@{address}:{self.port}/0"

    def __enter__(self) -> Redis:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        config = self.workdir / "redis.conf"
        config.write_text(
            f"bind {' '.join(self.addresses)}\nport {self.port}\nrequirepass {self.password}\n"
            f"dir {self.workdir}\nsave \"\"\nappendonly no\nlogfile {self.workdir / 'redis.log'}\n"
        )
        config.chmod(0o600)
        self.process = subprocess.Popen([server, str(config)], start_new_session=True)
        deadline = time.time() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                if b"PONG" in s.recv(100):
                    return self
            if time.time() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        _stop_group(self.process)


def dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME holding deploy/celery/dagster.yaml, as every machine of the deployment has."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_DIR / "dagster.yaml", path / "dagster.yaml")
    return path


@dataclass
class Worker:
    """`dagster-celery worker start` on one host: one Celery worker, `concurrency` runs at a time."""

    host: Host
    env: dict
    log: Path
    concurrency: int = 1
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def node_name(self) -> str:
        return f"{self.host.name}@{self.host.name if self.host.netns else socket.gethostname()}"

    def start(self) -> None:
        argv = [_bin("dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                "-y", str(DEPLOY_DIR / "worker.yaml"), "-n", self.host.name, "--loglevel", "INFO",
                "--", f"--concurrency={self.concurrency}", "--max-tasks-per-child=1"]  # as docs/DEPLOYMENT.md
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.host.command(argv), env=self.env, cwd=settings.project_root(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL every process of the worker at once, as when its machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.host.netns:
            pids = subprocess.run(["ip", "netns", "pids", self.host.netns], capture_output=True, text=True).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, timeout=60)


class LocalCeleryCluster:
    """Redis, `workers` Celery workers (each its own host when namespaces are available) and `dagster dev`.

    `env` carries the database URLs (ZIP_ETL_DATABASE_URL, ZIP_ETL_DAGSTER_DATABASE_URL) every piece
    shares; each piece gets its own DAGSTER_HOME with deploy/celery/dagster.yaml, as on real machines.
    """

    def __init__(self, workers: int, env: dict, *, partitions_per_run: int | None = None,
                 isolate: bool | None = None, own_database: bool = False):
        self.count = workers
        self.own_database = own_database
        # The refresh sensor would start building every missing zip code on its own; the tests and
        # the benchmark drive one backfill alone.
        self.base_env = {**{k: v for k, v in env.items() if k != "DAGSTER_HOME"}, "ZIP_ETL_AUTO_REFRESH": "off"}
        if partitions_per_run:
            self.base_env["ZIP_ETL_PARTITIONS_PER_RUN"] = str(partitions_per_run)
        self.isolate = namespaces_available() if isolate is None else isolate
        # Logs, DAGSTER_HOMEs and Redis's config; kept (and named in errors) only if something fails.
        self.workdir = Path(tempfile.mkdtemp(prefix="zetl-celery-"))
        self.workers: list[Worker] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LocalCeleryCluster:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        hosts = (
            self._stack.enter_context(Network(self.count)) if self.isolate
            else [Host(f"zip-etl-worker-{k}") for k in range(1, self.count + 1)]
        )
        self.redis = self._stack.enter_context(Redis([h.gateway for h in hosts], self.workdir))
        self.postgres = None
        if self.own_database:
            subnets = tuple(f"{h.gateway.rsplit('.', 1)[0]}.0/24" for h in hosts if h.netns)
            self.postgres = TcpPostgres(tuple(h.gateway for h in hosts), subnets)
            self._stack.callback(self.postgres.stop)
            self._db_password = secrets.token_hex(16)
            self.postgres.create_role("zip_etl", self._db_password)
            for database in ("zip_etl", "dagster"):
                self.postgres.create_database(database, owner="zip_etl")
        # Create Dagster's tables once, before the workers (each opens the instance) race to.
        with self.instance():
            pass
        path = f"{Path(sys.executable).parent}{os.pathsep}{self.base_env.get('PATH', os.environ.get('PATH', ''))}"
        for host in hosts:
            env = {
                **self.base_env,
                **self._database_env(host.gateway),
                "PATH": path,
                "DAGSTER_HOME": str(dagster_home(self.workdir / host.name)),
                BROKER_URL_ENV: self.redis.url(host.gateway),
                MAX_CONCURRENT_RUNS_ENV: str(self.count),
                "ZIP_ETL_EXECUTOR": "in_process",
            }
            worker = Worker(host, env, self.workdir / f"{host.name}.log")
            worker.start()
            self._stack.callback(worker.stop)
            self.workers.append(worker)
        self.wait_for_workers()
        self.dagster = self._stack.enter_context(
            running_dagster_dev(self.workdir / "dagster-dev.log", env=self.dagster_env(),
                                dagster_home=Path(self.dagster_env()["DAGSTER_HOME"]))
        )

    def _database_env(self, address: str) -> dict:
        if self.postgres is None:
            return {}
        return {"ZIP_ETL_DATABASE_URL": self.postgres.url("zip_etl", self._db_password, "zip_etl", address),
                "ZIP_ETL_DAGSTER_DATABASE_URL": self.postgres.url("zip_etl", self._db_password, "dagster", address)}

    @property
    def etl_url(self) -> str:
        """The ETL database as this machine reaches it."""
        return self.dagster_env()["ZIP_ETL_DATABASE_URL"]

    def dagster_env(self) -> dict:
        return {
            **self.base_env,
            **self._database_env("127.0.0.1"),
            "DAGSTER_HOME": str(dagster_home(self.workdir / "dagster")),
            BROKER_URL_ENV: self.redis.url(),
            MAX_CONCURRENT_RUNS_ENV: str(self.count),  # one run per worker slot
            "ZIP_ETL_EXECUTOR": "in_process",
        }

    @contextlib.contextmanager
    def instance(self):
        """The cluster's Dagster instance, opened in this process (storage, runs, events)."""
        from dagster import DagsterInstance

        env = self.dagster_env()
        keys = ("DAGSTER_HOME", "ZIP_ETL_DATABASE_URL", "ZIP_ETL_DAGSTER_DATABASE_URL", BROKER_URL_ENV,
                MAX_CONCURRENT_RUNS_ENV)
        saved = {key: os.environ.get(key) for key in keys}
        os.environ.update({key: env[key] for key in keys if key in env})
        try:
            with DagsterInstance.get() as instance:
                yield instance
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def celery_app(self):
        """A Celery client on the broker, configured as the run launcher is."""
        from dagster_celery.make_app import make_app

        return make_app({"broker": self.redis.url(), "backend": self.redis.url(), "task_default_queue": "dagster"})

    def wait_for_workers(self, timeout: float = 120) -> None:
        app = self.celery_app()
        wanted = {w.node_name for w in self.workers if w.process.poll() is None}
        deadline = time.time() + timeout
        while True:
            answered = {name for reply in app.control.ping(timeout=1) for name in reply}
            if wanted <= answered:
                return
            dead = [w for w in self.workers if w.process.poll() is not None]
            if dead or time.time() > deadline:
                logs = "\n".join(f"--- {w.log}\n{w.log.read_text()[-2000:]}" for w in self.workers)
                raise RuntimeError(f"workers {sorted(wanted - answered)} did not come up:\n{logs}")
            time.sleep(1)

    def __exit__(self, exc_type, *exc) -> None:
        self._stack.close()
        if exc_type is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            print(f"LocalCeleryCluster: logs kept in {self.workdir}", file=sys.stderr)
