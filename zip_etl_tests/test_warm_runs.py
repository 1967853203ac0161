"""Runs forked from a warm process (zip_etl/warm_runs.py, zip_etl.instance.ZipEtlRunLauncher): a run
executes the code as of its launch, the warm process is safe to fork, a warm run can be terminated
from the UI, and a warm process whose code location changed is replaced. Real processes, a real
`dagster dev`, real PostgreSQL; `dead runs` of warm processes are in test_dead_runs.py.
"""

import os
import shutil
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from zip_etl.instance import RUN_WORKER_TAG, TERMINATE_GRACE_SECONDS, WARM, get_instance
from zip_etl.run_liveness import Liveness, liveness, run_process
from zip_etl.warm_runs import (
    CodeFingerprint,
    WarmProcess,
    WarmProcessError,
    WarmProcesses,
    WarmTarget,
    definitions_folders,
    fork_hazards,
)
from zip_etl_tests.helpers import seed_raw
from zip_etl_tests.test_dead_runs import launch_partition, raw_table_locked, wait_for
from zip_etl_tools.dagster_dev import LAUNCH_RUN, running_dagster_dev

ROOT = Path(__file__).resolve().parents[1]


# -- what the warm process checks before every fork -------------------------------------------------


def _import_from(folder: Path, name: str):
    sys.path.insert(0, str(folder))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(folder))


def test_fingerprint_sees_an_edited_module_and_a_new_one_but_not_other_files(tmp_path):
    package = tmp_path / "probe_pkg_fingerprint"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text("VERSION = 1\n")
    _import_from(tmp_path, "probe_pkg_fingerprint.rules")
    try:
        fingerprint = CodeFingerprint.of_imported_modules()
        assert fingerprint.changed() == []
        (package / "notes.txt").write_text("an editor's file, not code")
        (package / "__pycache__").mkdir(exist_ok=True)
        assert fingerprint.changed() == []
        rules = package / "rules.py"
        rules.write_text("VERSION = 2\n")
        os.utime(rules, ns=(time.time_ns(), time.time_ns() + 10**9))  # another mtime, even within a tick
        assert fingerprint.changed() == [str(rules)]

        fingerprint = CodeFingerprint.of_imported_modules()
        (package / "new_rule.py").write_text("X = 1\n")  # not imported yet: the folder changed
        assert fingerprint.changed() == [str(package)]
    finally:
        for name in [m for m in sys.modules if m.startswith("probe_pkg_fingerprint")]:
            del sys.modules[name]


def test_fingerprint_watches_the_files_of_a_failed_import(tmp_path):
    broken = tmp_path / "probe_broken.py"
    broken.write_text("def oops(:\n")
    assert CodeFingerprint.of_imported_modules(also=[str(broken)]).files[str(broken)] is not None
    fingerprint = CodeFingerprint.of_imported_modules(also=[str(broken)])
    broken.write_text("def fixed():\n    return 1\n")
    os.utime(broken, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert str(broken) in fingerprint.changed()


def test_fork_hazards_name_a_thread_and_an_open_socket_but_not_the_control_socket():
    control, other_end = socket.socketpair()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="holds-a-lock-maybe")
    try:
        baseline = fork_hazards(control.fileno())
        assert not [h for h in baseline if f"fd {control.fileno()}" in h]
        thread.start()
        hazards = fork_hazards(control.fileno())
        assert "thread 'holds-a-lock-maybe'" in hazards
        assert f"socket on fd {other_end.fileno()}" in hazards
    finally:
        stop.set()
        thread.join()
        control.close()
        other_end.close()


# -- a warm process, started as the launcher starts it ---------------------------------------------


def _target(module: str, folder: Path) -> WarmTarget:
    return WarmTarget(location="probe", module=module, preload_modules=("zip_etl.instance",),
                      working_directory=str(folder))


def test_a_warm_process_imports_the_definitions_and_holds_no_connection_or_thread(zip_etl_environment):
    """zip_etl's own code location imports without opening a database connection or starting a thread:
    the warm process reports no hazard (it would refuse to start otherwise; see the next test)."""
    exits = []
    warm = WarmProcess(_target("zip_etl.definitions", ROOT), None, lambda *a: exits.append(a), why="a test")
    try:
        assert warm.alive and warm.failed_imports == {}
        sockets = [fd for fd in os.listdir(f"/proc/{warm.process.pid}/fd")
                   if os.readlink(f"/proc/{warm.process.pid}/fd/{fd}").startswith("socket:")]
        assert len(sockets) == 1  # its control socket, nothing else
        # A request it cannot execute: the child exits with an error, and its exit is heard.
        forked = warm.fork("not-a-run", "{}")
        wait_for("the child's exit to be heard", lambda: exits, timeout=60)
        assert exits == [("not-a-run", forked.pid, forked.started, 1)]
    finally:
        warm.close()
    assert not warm.alive


@pytest.mark.parametrize("opens", ["a database connection", "a thread"])
def test_a_warm_process_that_would_fork_a_connection_or_a_thread_refuses_to_start(tmp_path, etl_url, opens):
    """Code that connects or starts a thread when it is imported cannot be forked safely: the launcher
    is told, and starts the run as Dagster does."""
    body = {
        "a database connection": f"import psycopg2\nCONNECTION = psycopg2.connect({etl_url!r})\n",
        "a thread": "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n",
    }[opens]
    (tmp_path / "probe_unsafe.py").write_text(body)
    with pytest.raises(WarmProcessError, match="cannot fork safely: it holds (socket on fd|thread)"):
        WarmProcess(_target("probe_unsafe", tmp_path), None, lambda *a: None, why="a test")


def test_a_warm_process_that_cannot_import_the_code_location_says_so(tmp_path):
    (tmp_path / "probe_syntax.py").write_text("def oops(:\n")
    warm = WarmProcess(_target("probe_syntax", tmp_path), None, lambda *a: None, why="a test")
    try:
        assert list(warm.failed_imports) == ["probe_syntax"]
        assert "SyntaxError" in warm.failed_imports["probe_syntax"]
    finally:
        warm.close()


def test_a_warm_process_that_died_is_replaced_at_the_next_run(zip_etl_environment):
    warm_processes = WarmProcesses(on_exit=lambda *a: None)
    target = _target("zip_etl.definitions", ROOT)
    try:
        first = warm_processes.fork(target, None, "not-a-run-1", "{}")
        assert warm_processes.fork(target, None, "not-a-run-2", "{}").parent is first.parent  # reused
        first.parent.process.kill()
        first.parent.process.wait(30)
        replaced = warm_processes.fork(target, None, "not-a-run-3", "{}")
        assert replaced.parent is not first.parent and replaced.parent.alive
        assert replaced.parent.why == f"the previous one (pid {first.parent.process.pid}) had exited"
        assert warm_processes.fork(target, "another-code-server", "not-a-run-4", "{}").parent.why == \
            "code location probe was reloaded"
    finally:
        warm_processes.close()


def test_a_warm_process_whose_code_changed_is_replaced_before_the_next_run(tmp_path):
    """A rule edited and saved while nothing runs: the idle warm process notices within its 2 s look,
    the launcher imports the new code in a replacement at once, and the next run is forked from that
    one (no import waited for at launch). The stale one retires and exits."""
    module = tmp_path / "probe_rule.py"
    module.write_text("RULE = 1\n")
    warm_processes = WarmProcesses(on_exit=lambda *a: None)
    target = _target("probe_rule", tmp_path)
    try:
        first = warm_processes.fork(target, None, "not-a-run-1", "{}").parent
        module.write_text("RULE = 2  # edited\n")
        wait_for("the replacement to be ready", lambda: warm_processes.current("probe") not in (None, first),
                 timeout=120)
        replacement = warm_processes.current("probe")
        assert replacement.why == f"code changed since the warm process imported it: {module}"
        assert replacement.forked == 0
        forked = warm_processes.fork(target, None, "not-a-run-2", "{}")
        assert forked.parent is replacement and replacement.forked == 1
        first.process.wait(60)  # retired: it exits once its children have
    finally:
        warm_processes.close()


# -- under dagster dev: warm runs, terminate, a code change, a reload ------------------------------


def run_events(instance, run_id: str) -> list[str]:
    return [e.message or "" for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]


def warm_parent_pid(instance, run_id: str) -> int:
    message = next(m for m in run_events(instance, run_id) if "forked from the warm process" in m)
    return int(message.split("(pid ")[1].split(",")[0])


def wait_for_status(instance, run_id: str, statuses, timeout: float = 300):
    return wait_for(f"run {run_id} to be {statuses}", lambda: (lambda r: r if r.status in statuses else None)(
        instance.get_run_by_id(run_id)), timeout=timeout, interval=0.2)


TERMINATE = """
mutation($runId: String!) { terminateRun(runId: $runId) { __typename ... on PythonError { message } } }"""


@pytest.mark.slow
def test_ui_runs_are_forked_from_one_warm_process_and_can_be_terminated(zip_etl_environment, etl_url, dagster_dev):
    zip_codes = ["10020", "10021"]
    seed_raw(etl_url, "public", rows=300, zip_codes=zip_codes, seed=94)
    with get_instance() as instance:
        first, second = (launch_partition(dagster_dev, z) for z in zip_codes)
        for run_id in (first, second):
            run = wait_for_status(instance, run_id, {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE})
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags[RUN_WORKER_TAG] == WARM
        assert warm_parent_pid(instance, first) == warm_parent_pid(instance, second)

        # The UI's Terminate sends terminateRun: the run's process gets SIGTERM and the run is canceled,
        # here while its reading thread waits on a lock.
        with raw_table_locked(etl_url):
            run_id = launch_partition(dagster_dev, zip_codes[0])
            run = wait_for("the run to start", lambda: (lambda r: r if r.status == dg.DagsterRunStatus.STARTED
                           and run_process(r) else None)(instance.get_run_by_id(run_id)), timeout=240)
            result = dagster_dev.client()._execute(TERMINATE, {"runId": run_id})["terminateRun"]
            assert result["__typename"] == "TerminateRunSuccess", result
            time.sleep(1)
        assert wait_for_status(instance, run_id, {dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS},
                               timeout=120).status == dg.DagsterRunStatus.CANCELED
        wait_for("the run's process to exit", lambda: liveness(run_process(run)) is Liveness.DEAD, timeout=30)


PROBE = '''
import signal
import time

import dagster as dg

@dg.asset
def probe():
    from zip_etl.warm_runs import in_warm_run_worker

    return dg.MaterializeResult(metadata={{"version": {version}, "warm_run_worker": in_warm_run_worker()}})

@dg.asset
def deaf_to_sigterm():
    """Ignores SIGTERM for ten minutes, as a step stuck in a C call that never returns to Python does."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
    time.sleep(600)

# In the run's own process (as zip_etl's runs are): a step process would import the code afresh.
defs = dg.Definitions(assets=[probe, deaf_to_sigterm], executor=dg.in_process_executor)
'''


def launch_probe(server, asset: str = "probe") -> str:
    params = {"selector": {"repositoryLocationName": "warm_probe", "repositoryName": "__repository__",
                           "jobName": "__ASSET_JOB", "assetSelection": [{"path": [asset]}]}}
    launched = server.client()._execute(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def probe_version(instance, run_id: str) -> int:
    wait_for_status(instance, run_id, {dg.DagsterRunStatus.SUCCESS})
    event = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)[0]
    return event.asset_materialization.metadata["version"].value


def test_fingerprint_sees_a_components_yaml_edited_added_or_removed(tmp_path):
    """A component's defs.yaml is read as the definitions load, not imported: the definitions folders of
    the code location's component tree are watched for YAML files (zip_etl's own: zip_etl/defs/)."""
    import zip_etl.definitions  # noqa: F401 - the code location's module, as a warm process imports it

    assert definitions_folders(["zip_etl.definitions"]) == [str(ROOT / "zip_etl" / "defs")]
    instance = tmp_path / "defs" / "cleaned_things"
    instance.mkdir(parents=True)
    yaml = instance / "defs.yaml"
    yaml.write_text("type: a.Component\n")
    fingerprint = CodeFingerprint.of_imported_modules(definitions_folders=[str(tmp_path / "defs")])
    assert fingerprint.changed() == []
    yaml.write_text("type: a.Component\nattributes: {}\n")
    assert fingerprint.changed() == [str(yaml)]
    fingerprint = CodeFingerprint.of_imported_modules(definitions_folders=[str(tmp_path / "defs")])
    (tmp_path / "defs" / "cleaned_others").mkdir()
    (tmp_path / "defs" / "cleaned_others" / "defs.yaml").write_text("type: a.Component\n")
    assert fingerprint.changed() == [str(tmp_path / "defs")]
    fingerprint = CodeFingerprint.of_imported_modules(definitions_folders=[str(tmp_path / "defs")])
    yaml.unlink()
    assert str(tmp_path / "defs") in fingerprint.changed()


RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }"""


@pytest.mark.slow
def test_a_run_executes_the_code_as_of_its_launch(fresh_dagster_storage, tmp_path):
    """A code location whose module is edited between two launches, without a reload: the second run
    executes the edited code (from a new warm process), as a fresh process per run would. A reload
    of the location starts a new warm process too. (Storage of its own: the session's `dagster dev`
    has a daemon too, which would dequeue these runs.)"""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "dagster.yaml", project / "dagster.yaml")
    (project / "workspace.yaml").write_text(textwrap.dedent(f"""\
        load_from:
          - python_module:
              module_name: warm_probe
              working_directory: {project}
              location_name: warm_probe
        """))
    module = project / "warm_probe.py"
    module.write_text(PROBE.format(version=1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running_dagster_dev(tmp_path / "dagster-dev.log", env=env, cwd=project) as server, get_instance() as instance:
        first, second = launch_probe(server), None
        assert probe_version(instance, first) == 1
        second = launch_probe(server)
        assert probe_version(instance, second) == 1
        warm = warm_parent_pid(instance, first)
        assert warm_parent_pid(instance, second) == warm, run_events(instance, second)
        # The run worker knows it is one (zip_etl.instance then keeps its storage connections open).
        materialization = instance.all_logs(second, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)[0]
        assert materialization.asset_materialization.metadata["warm_run_worker"].value is True

        module.write_text(PROBE.format(version=2))  # an edit, no reload
        edited = launch_probe(server)
        assert probe_version(instance, edited) == 2
        assert warm_parent_pid(instance, edited) != warm
        assert any(f"code changed since the warm process imported it: {module}" in m
                   for m in run_events(instance, edited))

        reload = server.client()._execute(RELOAD, {"name": "warm_probe"})["reloadRepositoryLocation"]
        assert reload["__typename"] == "WorkspaceLocationEntry", reload
        # The daemon sees the reloaded code server on its next look at the workspace.
        for _attempt in range(10):
            reloaded = launch_probe(server)
            assert probe_version(instance, reloaded) == 2
            if any("was reloaded" in m for m in run_events(instance, reloaded)):
                break
            time.sleep(3)
        else:
            raise AssertionError("no run was forked from a new warm process after the reload")
        assert warm_parent_pid(instance, reloaded) not in {warm, warm_parent_pid(instance, edited)}
        with pytest.raises(ProcessLookupError):
            os.kill(warm, signal.SIGCONT)  # the first warm process retired and exited

        # A run that does not end on Terminate (SIGTERM, repeated every second) is killed after the
        # grace period, and canceled.
        stuck = launch_probe(server, "deaf_to_sigterm")
        wait_for("its step to start", lambda: instance.all_logs(stuck, of_type=dg.DagsterEventType.STEP_START),
                 timeout=120)
        run = instance.get_run_by_id(stuck)
        assert server.client()._execute(TERMINATE, {"runId": stuck})["terminateRun"]["__typename"] == \
            "TerminateRunSuccess"
        ended = wait_for_status(instance, stuck, {dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS,
                                                  dg.DagsterRunStatus.FAILURE}, timeout=TERMINATE_GRACE_SECONDS + 60)
        assert ended.status == dg.DagsterRunStatus.CANCELED
        assert any("after Terminate: killed" in m for m in run_events(instance, stuck)), run_events(instance, stuck)
        assert liveness(run_process(run)) is Liveness.DEAD
