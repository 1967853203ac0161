"""Runs that start in a warm process: Dagster, pandas, pyarrow and the code location already imported.

Dagster's DefaultRunLauncher has the code server start every run in a fresh Python process, which
imports Dagster, pandas, pyarrow and the definitions before the run can begin: about 5 s of a
one-zip-code run launched from the UI (docs/BENCHMARKS.md). zip_etl's run launcher
(`zip_etl.instance.ZipEtlRunLauncher`) keeps, per code location, one *warm process* that has imported
all of that once, and forks a child per run; the child executes the run exactly as
`dagster api execute_run` does (dagster-celery's workers do the same inside a started process).

**Code as of the launch.** A child runs what its warm process imported, so before every fork the
warm process checks that nothing it imported has changed since: each imported file's size and
modification time, the Python files of each imported package's folder (a module added), and the YAML
files of the code location's definitions folders (a component's `defs.yaml` edited, added or
removed: Dagster reads them as the definitions load, not as modules). When something changed it
forks nothing, says which file, and exits once its running children are done;
the launcher starts a new warm process, which imports the code as it is now, and forks the run from
that one. An idle warm process also looks every 2 s and tells the launcher, which starts the
replacement at once: the run launched after a rule is edited and saved finds it ready. The launcher also replaces a warm process when its code location was reloaded (`dagster
dev` restarted the code server, which then has a new id): a reload also picks up what the code
reads when it loads, such as environment variables. Modules the warm process never imported are
imported by the child itself, from the files as they are.

**Fork safety.** The warm process imports code and nothing more: no database connection, no Python
thread. Before every fork it checks that it still has neither (a second Python thread or an open
socket besides its control socket); if it has, it refuses, and the launcher starts the run the way
Dagster does. Native threads that imports start (OpenBLAS's pool in numpy, jemalloc's background
purger in pyarrow) are fork-aware: they register pthread_atfork handlers.

**Liveness.** The warm process reaps its children and tells the launcher when one exits; a run whose
process exited before the run ended (SIGKILL, the OOM killer) is marked failed at once, the way
Dagster's code server marks the runs it started. Run monitoring checks the same from the run's
`zip_etl/process` tag (zip_etl/run_liveness.py), which covers the children of a warm process that is
gone. The warm process exits when its launcher's process does (its control socket closes); a child
already running finishes its run.

Run `python -m zip_etl.warm_runs --help` only to see the arguments: the launcher starts it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Importing Dagster, pandas, pyarrow and the definitions takes 3-9 s on the project's machine; a warm
# process that has not finished in this time is killed and the run starts the way Dagster does.
START_TIMEOUT_SECONDS = 180.0
# A fork and its reply take milliseconds; checking the code's files about 10 ms.
FORK_TIMEOUT_SECONDS = 30.0
# After a warm process failed to start, runs of its code location start the way Dagster does for
# this long, instead of each waiting for another attempt.
RETRY_START_AFTER_SECONDS = 300.0
# An idle warm process looks at its code's files this often (about 10 ms each time), and tells the
# launcher when they changed, so that a replacement imports the new code before the next run asks.
CODE_CHECK_SECONDS = 2.0


# --- what the warm process imported, and whether it changed -------------------------------------


class CodeFingerprint:
    """The files of every module imported in this process (size, modification time) and the Python
    files of their folders, and the YAML files of definitions folders, to tell whether the code on
    disk is still the code in memory."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int] | None] = {}
        self.folders: dict[str, tuple[int, frozenset[str]] | None] = {}
        self.definitions_folders: dict[str, frozenset[str]] = {}

    @classmethod
    def of_imported_modules(cls, also: Iterable[str] = (), definitions_folders: Iterable[str] = ()) -> CodeFingerprint:
        """The fingerprint of every imported module's file, of the files `also`, and of the YAML files
        under `definitions_folders` (a component tree's defs folders)."""
        fingerprint = cls()
        for folder in definitions_folders:
            fingerprint.definitions_folders[folder] = _yaml_files(folder)
            also = [*also, *fingerprint.definitions_folders[folder]]
        paths = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
        for path in [*paths, *also]:
            if isinstance(path, str) and path not in fingerprint.files and not path.startswith("<"):
                fingerprint.files[path] = _file_state(path)
                folder = os.path.dirname(path)
                if folder not in fingerprint.folders:
                    fingerprint.folders[folder] = _folder_state(folder)
        return fingerprint

    def changed(self, limit: int = 5) -> list[str]:
        """Up to `limit` files or folders that differ from when the fingerprint was taken."""
        found = [path for path, state in self.files.items() if _file_state(path) != state]
        found += [folder for folder, files in self.definitions_folders.items() if _yaml_files(folder) != files]
        for folder, state in self.folders.items():
            mtime = _folder_mtime(folder)
            if state is None or mtime is None:
                if (state is None) != (mtime is None):
                    found.append(folder)
            elif mtime != state[0]:
                # The folder changed (an editor's swap file, a new cache): only its Python files count.
                now = _folder_state(folder)
                if now is None or now[1] != state[1]:
                    found.append(folder)
                else:
                    self.folders[folder] = now
        return found[:limit]


def _file_state(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _folder_mtime(folder: str) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _yaml_files(folder: str) -> frozenset[str]:
    """The YAML files anywhere under `folder` (a definitions folder: a few, in a few subfolders)."""
    return frozenset(os.path.join(root, name) for root, _, names in os.walk(folder)
                     for name in names if name.endswith((".yaml", ".yml")))


def definitions_folders(modules: Iterable[str]) -> list[str]:
    """The definitions folders of the component trees that the Definitions of `modules` were loaded from."""
    import dagster as dg

    folders = []
    for module in filter(None, map(sys.modules.get, modules)):
        for value in vars(module).values():
            tree = value.component_tree if isinstance(value, dg.Definitions) else None
            if tree is not None:
                folders.append(str(tree.defs_module_path))
    return folders


def _folder_state(folder: str) -> tuple[int, frozenset[str]] | None:
    try:
        mtime = os.stat(folder).st_mtime_ns
        names = frozenset(name for name in os.listdir(folder) if name.endswith(".py"))
    except OSError:
        return None
    return mtime, names


def fork_hazards(control_fd: int) -> list[str]:
    """What would make a fork of this process unsafe: Python threads besides this one, open sockets
    besides the control socket (a database connection would be shared with the child)."""
    hazards = [f"thread {t.name!r}" for t in threading.enumerate() if t is not threading.current_thread()]
    control = os.readlink(f"/proc/self/fd/{control_fd}") if os.path.exists(f"/proc/self/fd/{control_fd}") else ""
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("socket:") and target != control:
                    hazards.append(f"socket on fd {fd}")
    return hazards


# --- the warm process ----------------------------------------------------------------------------

_in_run_worker = False


def in_warm_run_worker() -> bool:
    """Whether this process is a run worker forked from a warm process (it executes one run, then exits)."""
    return _in_run_worker


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _lines(sock: socket.socket, buffer: bytearray) -> list[dict] | None:
    """The complete messages received so far (None when the other end closed)."""
    data = sock.recv(1 << 20)
    if not data:
        return None
    buffer.extend(data)
    *complete, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    return [json.loads(line) for line in complete if line]


def serve(control_fd: int, modules: Sequence[str], working_directory: str | None) -> None:
    """Import `modules`, then fork a child per run request until the launcher goes away."""
    from zip_etl.dagster_internals import import_run_execution

    sock = socket.socket(fileno=control_fd)
    if working_directory:
        os.chdir(working_directory)
        sys.path.insert(0, working_directory)  # as Dagster's loader does for a code location
    import_run_execution()
    failed, involved = {}, set()
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as error:  # noqa: BLE001 - the child imports it again and reports the error
            failed[name] = f"{type(error).__name__}: {error}"
            # The files the failure came from (a syntax error's file, the frames' files): when one of
            # them is fixed, this warm process is stale, as when an imported file changes.
            involved.update(frame.filename for frame in traceback.extract_tb(error.__traceback__))
            if isinstance(getattr(error, "filename", None), str):
                involved.add(error.filename)
    fingerprint = CodeFingerprint.of_imported_modules(also=involved, definitions_folders=definitions_folders(modules))

    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to the wakeup fd
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C of `dagster dev`: the launcher's exit ends us
    try:
        _send(sock, {"ready": os.getpid(), "failed_imports": failed, "hazards": fork_hazards(control_fd)})
        _fork_on_request(sock, fingerprint, control_fd, wake_read, wake_write)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the launcher's process is gone; running children finish by themselves


def _fork_on_request(sock: socket.socket, fingerprint: CodeFingerprint, control_fd: int, wake_read: int,
                     wake_write: int) -> None:
    children: dict[int, str] = {}
    accepting, told_changed = True, False
    buffer = bytearray()
    next_check = time.monotonic() + CODE_CHECK_SECONDS
    while accepting or children:
        watching = accepting and not told_changed
        timeout = max(0.0, next_check - time.monotonic()) if watching else None
        readable, _, _ = select.select([sock, wake_read], [], [], timeout)
        if watching and time.monotonic() >= next_check:
            next_check = time.monotonic() + CODE_CHECK_SECONDS
            if changed := fingerprint.changed():
                told_changed = True
                _send(sock, {"code_changed": changed})
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
            for pid, run_id, code in _reap(children):
                _send(sock, {"exited": pid, "run_id": run_id, "code": code})
        if sock in readable:
            messages = _lines(sock, buffer)
            if messages is None:
                return
            for message in messages:
                if message.get("retire"):
                    accepting = False
                elif not accepting:
                    _send(sock, {"stale": ["(this warm process was retired)"]})
                elif changed := fingerprint.changed():
                    accepting = False
                    _send(sock, {"stale": changed})
                elif hazards := fork_hazards(control_fd):
                    _send(sock, {"refused": ", ".join(hazards)})
                else:
                    pid = os.fork()
                    if pid == 0:
                        _become_run_worker(message, close=(control_fd, wake_read, wake_write))
                    children[pid] = message["run_id"]
                    _send(sock, {"forked": pid, "run_id": message["run_id"], "started": _create_time(pid)})


def _reap(children: dict[int, str]) -> list[tuple[int, str | None, int]]:
    exited = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        exited.append((pid, children.pop(pid, None), os.waitstatus_to_exitcode(status)))
    return exited


def _create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _become_run_worker(request: dict, close: Sequence[int]) -> None:
    """In the forked child: execute the run as `dagster api execute_run` would, then exit."""
    global _in_run_worker
    _in_run_worker = True
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in close:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        importlib.invalidate_caches()  # modules added since the warm process started are found
        from zip_etl.dagster_internals import execute_run_in_this_process

        code = execute_run_in_this_process(request["args"])
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the warm loop
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# --- the launcher's side --------------------------------------------------------------------------


class WarmProcessError(RuntimeError):
    """The warm process could not start this run: the launcher starts it the way Dagster does."""


@dataclass(frozen=True)
class WarmTarget:
    """What a warm process imports: modules a run needs (the instance's storage, what the code
    imports on first use), then the code location's module (None when it is loaded from a file);
    and the folder the code location is loaded from."""

    location: str
    module: str | None
    preload_modules: tuple[str, ...]
    working_directory: str | None

    def modules(self) -> list[str]:
        return [*self.preload_modules, *([self.module] if self.module else [])]


@dataclass(frozen=True)
class Forked:
    """A run's process, and the warm process it was forked from (for the run's engine event)."""

    pid: int
    started: float
    parent: WarmProcess


# on_exit(run_id, pid, started, exit code): a child of a warm process exited.
ExitHandler = Callable[[str, int, float, int], None]


class WarmProcess:
    """One warm process, as its launcher sees it: started, asked to fork run workers, heard when one exits."""

    def __init__(self, target: WarmTarget, code_server_id: str | None, on_exit: ExitHandler, why: str,
                 on_code_changed: Callable[[WarmProcess, list[str]], None] | None = None):
        self.target = target
        self.code_server_id = code_server_id
        self.why = why  # why it was started: told in the engine event of the first run it forks
        self.forked = 0
        self._on_exit = on_exit
        self._on_code_changed = on_code_changed
        self._replies: queue.Queue[dict] = queue.Queue()
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "zip_etl.warm_runs", "--control-fd", str(theirs.fileno()),
                   *(arg for module in target.modules() for arg in ("--module", module))]
        if target.working_directory:
            command += ["--working-directory", target.working_directory]
        self.started_at = time.time()
        self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._sock = ours
        self._reader = threading.Thread(target=self._read, name=f"warm-process-{self.process.pid}", daemon=True)
        self._reader.start()
        ready = self._reply(START_TIMEOUT_SECONDS, "finish importing the code location")
        if "ready" not in ready or ready["hazards"]:
            self.kill()
            raise WarmProcessError(f"the warm process cannot fork safely: it holds {', '.join(ready['hazards'])}"
                                   if "ready" in ready else f"the warm process did not start: {ready}")
        self.failed_imports: dict[str, str] = ready["failed_imports"]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self) -> None:
        with contextlib.suppress(OSError), self._sock.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                if "exited" in message:
                    if message["run_id"]:
                        started = self._started.pop(message["exited"], 0.0)
                        try:
                            self._on_exit(message["run_id"], message["exited"], started, message["code"])
                        except Exception:  # noqa: BLE001 - the reader must go on hearing exits
                            logger.exception("handling the exit of run worker %s failed", message["exited"])
                elif "code_changed" in message:
                    if self._on_code_changed is not None:
                        self._on_code_changed(self, message["code_changed"])
                else:
                    if "forked" in message:  # before its exit can be heard
                        self._started[message["forked"]] = message["started"]
                    self._replies.put(message)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)  # reaped: a warm process that retired and exited is no zombie
        self._replies.put({"gone": self.process.poll()})

    def _reply(self, timeout: float, doing: str) -> dict:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WarmProcessError(f"the warm process (pid {self.process.pid}) did not {doing} "
                                   f"within {timeout:.0f} s") from None

    def fork(self, run_id: str, execute_run_args: str) -> Forked:
        """A child executing `run_id`; raises StaleCode when the code changed since the imports."""
        with self._lock:
            try:
                _send(self._sock, {"run_id": run_id, "args": execute_run_args})
            except OSError as error:
                raise WarmProcessError(f"the warm process (pid {self.process.pid}) is gone: {error}") from None
            reply = self._reply(FORK_TIMEOUT_SECONDS, "fork the run's process")
        if "forked" in reply:
            self.forked += 1
            return Forked(reply["forked"], reply["started"], self)
        if "stale" in reply:
            raise StaleCode(reply["stale"])
        if "refused" in reply:
            raise WarmProcessError(f"the warm process refused to fork: it holds {reply['refused']}")
        raise WarmProcessError(f"the warm process (pid {self.process.pid}) is gone (exit code {reply.get('gone')})")

    def retire(self) -> None:
        """Fork nothing more; the process exits once its children have (their exits are still heard)."""
        with contextlib.suppress(OSError):
            _send(self._sock, {"retire": True})

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def close(self) -> None:
        """Closing the control socket ends the warm process; children already forked run on."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


class StaleCode(WarmProcessError):
    def __init__(self, changed: list[str]):
        super().__init__(f"code changed since the warm process imported it: {', '.join(changed)}")
        self.changed = changed


class WarmProcesses:
    """The warm processes of one launcher, one per code location, replaced when their code changes:
    as soon as the files change (the warm process says so), so that the run launched after a rule is
    edited does not wait for the imports, and at the latest when a run finds its code stale."""

    def __init__(self, on_exit: ExitHandler):
        self._on_exit = on_exit
        self._by_location: dict[str, WarmProcess] = {}
        self._start_failed: dict[str, tuple[float, str]] = {}  # location -> (when, why)
        self._replacing: dict[str, threading.Event] = {}  # location -> set when its replacement is done
        self._closed = False
        self._lock = threading.Lock()

    def fork(self, target: WarmTarget, code_server_id: str | None, run_id: str, execute_run_args: str) -> Forked:
        """The run's process, forked from a warm process that holds the code as it is now."""
        if replacing := self._replacing.get(target.location):
            replacing.wait(START_TIMEOUT_SECONDS)  # its imports are under way: sooner than starting another
        with self._lock:
            warm = self._by_location.pop(target.location, None)
            if warm is None:
                why = f"it is the first run of code location {target.location} this launcher starts"
            elif not warm.alive:
                why, warm = f"the previous one (pid {warm.process.pid}) had exited", None
            elif warm.target != target or warm.code_server_id != code_server_id:
                why = f"code location {target.location} was reloaded"
                warm.retire()
                warm = None
            for _attempt in range(2):
                if warm is None:
                    warm = self._start(target, code_server_id, why)
                try:
                    forked = warm.fork(run_id, execute_run_args)
                except StaleCode as stale:
                    why = str(stale)
                    warm.retire()
                    warm = None
                    continue
                self._by_location[target.location] = warm
                return forked
            raise WarmProcessError(f"the code keeps changing ({why})")

    def _start(self, target: WarmTarget, code_server_id: str | None, why: str) -> WarmProcess:
        failed = self._start_failed.get(target.location)
        if failed and time.monotonic() - failed[0] < RETRY_START_AFTER_SECONDS:
            raise WarmProcessError(f"{failed[1]} (a new attempt after {RETRY_START_AFTER_SECONDS:.0f} s)")
        try:
            return WarmProcess(target, code_server_id, self._on_exit, why, self._code_changed)
        except WarmProcessError as error:
            self._start_failed[target.location] = (time.monotonic(), str(error))
            raise

    def current(self, location: str) -> WarmProcess | None:
        """The warm process the next run of `location` would be forked from, if one is up."""
        with self._lock:
            return self._by_location.get(location)

    def _code_changed(self, stale: WarmProcess, changed: list[str]) -> None:
        """Told by `stale`'s reader thread, which must go on reading (a fork may be waiting on it):
        the replacement starts in a thread of its own."""
        threading.Thread(target=self._replace, args=(stale, changed), daemon=True,
                         name=f"warm-process-replace-{stale.process.pid}").start()

    def _replace(self, stale: WarmProcess, changed: list[str]) -> None:
        location = stale.target.location
        with self._lock:
            if self._closed or self._by_location.get(location) is not stale or location in self._replacing:
                return
            done = self._replacing[location] = threading.Event()
        fresh = None
        try:
            fresh = WarmProcess(stale.target, stale.code_server_id, self._on_exit, str(StaleCode(changed)),
                                self._code_changed)
        except WarmProcessError as error:  # the next run finds the code stale and starts one itself
            logger.warning("could not start a warm process for the changed code of %s: %s", location, error)
        finally:
            with self._lock:
                del self._replacing[location]
                if fresh is not None and not self._closed and self._by_location.get(location) is stale:
                    self._by_location[location] = fresh
                    stale.retire()
                elif fresh is not None:
                    fresh.close()
            done.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for warm in self._by_location.values():
                warm.close()
            self._by_location.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A warm process that forks Dagster run workers (zip_etl.instance).")
    parser.add_argument("--control-fd", type=int, required=True, help="the socket to the launcher")
    parser.add_argument("--module", action="append", default=[], help="a module to import before forking")
    parser.add_argument("--working-directory", help="the code location's working directory")
    args = parser.parse_args(argv)
    serve(args.control_fd, args.module, args.working_directory)


if __name__ == "__main__":
    # `python -m` runs this file as `__main__`, a second copy of the module beside the
    # `zip_etl.warm_runs` that the rest of zip_etl imports. Run the imported one, so that the run
    # worker's `in_warm_run_worker()` is the flag zip_etl.instance reads (it keeps the run's storage
    # connections open only when that says True).
    from zip_etl.warm_runs import main as imported_main

    imported_main()
