"""The Dagster UI driven the way a person uses it, in headless Chromium (Playwright).

Shared by the browser test and `scripts/ui_latency.py`. Every step clicks and reads what a person
sees: the Materialize dialog, the partition list and its status, the backfill page, the Checks tab.
Debian's chromium is used (`CHROMIUM` below): Playwright's own browser download is not needed.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 1000}


class UIError(AssertionError):
    """The UI did not show what it should have, with the screenshot that shows what it did show."""


@contextlib.contextmanager
def chromium_page(artifacts: Path) -> Iterator:
    """A fresh headless Chromium page; a trace of the session is kept in `artifacts` on failure."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise UIError(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`)")
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(viewport=VIEWPORT)
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        failed = True
        try:
            yield page
            failed = False
        finally:
            context.tracing.stop(path=str(artifacts / "trace.zip") if failed else None)
            browser.close()


def graphql(base_url: str, query: str, timeout: float = 60) -> dict:
    """One GraphQL request to the webserver, as the UI sends it."""
    request = urllib.request.Request(
        base_url.rstrip("/") + "/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.load(response)
    if body.get("errors"):
        raise UIError(f"GraphQL {query!r} at {base_url}: {body['errors']}")
    return body["data"]


def dismiss_community_dialog(base_url: str) -> None:
    """Record that Dagster's one-time "Join the Dagster community" dialog was seen, with the mutation
    its own Skip button sends (`setNuxSeen`), so the dialog never covers the page. (Clicking Skip
    while it showed raced with the page: under load a checkbox label of the dialog took the click.)"""
    graphql(base_url, "mutation { setNuxSeen }")
    if graphql(base_url, "{ shouldShowNux }")["shouldShowNux"]:
        raise UIError(f"{base_url} still shows the community dialog after setNuxSeen")


# In the page: the wall-clock time at which each run page (by its path) first showed a final status,
# so that scripts/ui_latency.py reports when the page showed it, not when a check from Python saw it
# (Playwright's waits look again up to every 0.5 s).
RECORD_FINAL_STATUS_SHOWN = """
(() => {
  const shownAt = window.__zipEtlFinalStatusShownAt = {};
  const FINAL = new Set(['Success', 'Failure', 'Canceled']);
  const isFinal = (el) => el.childElementCount === 0 && FINAL.has(el.textContent);
  const shows = (node) => {
    const el = node.nodeType === Node.TEXT_NODE ? node.parentElement : node;
    return !!el && el.nodeType === Node.ELEMENT_NODE && (isFinal(el) || [...el.querySelectorAll('*')].some(isFinal));
  };
  new MutationObserver((records) => {
    const path = location.pathname;
    if (!path.startsWith('/runs/') || shownAt[path]) return;
    if (records.some((r) => shows(r.target) || [...r.addedNodes].some(shows))) shownAt[path] = Date.now() / 1000;
  }).observe(document, {subtree: true, childList: true, characterData: true});
})();
"""


class DagsterUI:
    """One asset's pages in the Dagster UI."""

    def __init__(self, page, base_url: str, artifacts: Path, asset: str = "cleaned_companies"):
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self.asset = asset
        self._toast_links: dict = {}  # run or backfill id -> the "View" link of the toast that announced it
        page.add_init_script(RECORD_FINAL_STATUS_SHOWN)  # for the documents opened from now on
        dismiss_community_dialog(self.base_url)  # before any page is opened

    # -- navigation and evidence ------------------------------------------------------------
    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def open_asset(self, view: str) -> None:
        self.open(f"/assets/{self.asset}?view={view}")

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def fail(self, message: str, name: str = "failure") -> UIError:
        return UIError(f"{message} (screenshot: {self.screenshot(name)})")

    # -- launching ------------------------------------------------------------------------------
    def _launch_dialog(self, search: str):
        self.open_asset("partitions")
        self.page.get_by_role("button", name="Materialize…").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text("Select a partition or create one").click()
        self.page.keyboard.type(search)
        return dialog

    def _launched(self, kind: str) -> str:
        """The id in the toast Dagster shows after a launch ("Launched run 1a2b3c4d" / "Created backfill abcdefgh"),
        full length, from the toast's link."""
        toast = self.page.get_by_text(re.compile(rf"^{kind} \w+$"))
        toast.wait_for()
        link = toast.locator("xpath=ancestor::*[3]").get_by_role("link", name="View", exact=True)
        href = link.get_attribute("href") or ""
        match = re.search(r"/runs/(?:b/)?([\w-]+)", href)
        if not match:
            raise self.fail(f"no link to the launched {kind.split()[-1]} in {href!r}")
        self._toast_links[match.group(1)] = link
        return match.group(1)

    def materialize_partition(self, key: str) -> tuple[str, float]:
        """Materialize one partition from the asset's Materialize dialog; return the run id and the
        time.monotonic() of the click on "Launch 1 run"."""
        dialog = self._launch_dialog(key)
        self.page.get_by_role("menuitem").filter(has=self.page.get_by_text(key, exact=True)).click()
        self.page.keyboard.press("Escape")
        launch = dialog.get_by_role("button", name="Launch 1 run")
        self.screenshot("materialize_dialog_one_partition")
        clicked = time.monotonic()
        launch.click()
        return self._launched("Launched run"), clicked

    def launch_backfill(self, search: str, expected_partitions: int) -> str:
        """Filter the partitions by `search`, "Select all", launch the backfill; return its id."""
        dialog = self._launch_dialog(search)
        self.page.get_by_role("menuitem").filter(has_text=f"Select all ({expected_partitions})").click()
        self.page.keyboard.press("Escape")
        dialog.get_by_text(f"{expected_partitions} partitions selected").wait_for()
        self.screenshot("backfill_dialog")
        dialog.get_by_role("button", name="Launch backfill").click()
        return self._launched("Created backfill")

    def execute_all_checks(self) -> str:
        """Run every check of the asset from its Checks tab; return the run id."""
        self.open_asset("checks")
        self.page.get_by_role("button", name="Execute all").click()
        return self._launched("Launched run")

    # -- waiting for what a person would wait for ---------------------------------------------
    def poll(self, description: str, done, timeout: float, interval: float = 0.25) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise self.fail(f"timed out after {timeout:.0f}s waiting for {description}")
            self.page.wait_for_timeout(interval * 1000)

    def show_partition(self, key: str) -> None:
        self.open_asset("partitions")
        self.page.get_by_placeholder("Filter by name").fill(key)
        self.page.get_by_text(key, exact=True).first.click()

    def wait_for_partition_status(
        self, key: str, status: str = "Materialized", run_id: str | None = None, timeout: float = 300
    ) -> None:
        """Wait until the partition's page shows `status`, from run `run_id` when given (the page
        names the run of the latest materialization). That panel does not refresh by itself, so
        it is reloaded each second, as a person would."""
        self.show_partition(key)
        badge = self.page.get_by_text(status, exact=True)
        run_link = self.page.get_by_role("link", name=run_id[:8], exact=True) if run_id else None

        def shown() -> bool:
            if badge.count() and badge.first.is_visible() and (run_link is None or run_link.count() > 0):
                return True
            self.show_partition(key)
            return False

        self.poll(f"partition {key} to show {status}" + (f" from run {run_id[:8]}" if run_id else ""), shown, timeout, 1)

    def wait_for_partition_failed(self, key: str, run_id: str, timeout: float = 120) -> None:
        """Wait until the partition's page shows it failed: the red banner naming the run that failed
        without materializing it (the partition list marks it red; "Failed (n)" counts it)."""
        self.show_partition(key)
        banner = self.page.get_by_text(re.compile(rf"Run {run_id[:8]} failed, and did not materialize this asset"))

        def shown() -> bool:
            if banner.count() and banner.first.is_visible():
                return True
            self.show_partition(key)
            return False

        self.poll(f"partition {key} to show the failure of run {run_id[:8]}", shown, timeout, 1)

    def run_status(self) -> str:
        header = self.page.get_by_text(re.compile(r"^(Queued|Starting|Started|Success|Failure|Canceled|Canceling)$"))
        return header.first.inner_text() if header.count() else ""

    def wait_for_run(self, run_id: str, timeout: float = 300, *, via_toast: bool = False) -> str:
        """Open the run's page and wait until it shows a final status; return it. `via_toast`: as a
        person does right after a launch, by the toast's "View" link (the page changes in place),
        when the toast still shows; otherwise by loading the run's address."""
        link = self._toast_links.pop(run_id, None) if via_toast else None
        if link is not None and link.is_visible():
            link.click()
            self.page.wait_for_url(f"**/runs/{run_id}*")
        else:
            self.open(f"/runs/{run_id}")
        self.poll(f"run {run_id} to finish", lambda: self.run_status() in {"Success", "Failure", "Canceled"}, timeout)
        return self.run_status()

    def final_status_shown_at(self, run_id: str) -> float | None:
        """When (time.time()) the run's page first showed its final status, as the page recorded it."""
        return self.page.evaluate(
            "(path) => (window.__zipEtlFinalStatusShownAt || {})[path] ?? null", f"/runs/{run_id}")

    def backfill_status(self) -> str:
        """The backfill page's Status field ("In progress", "Succeeded", "Failed", ...)."""
        label = self.page.get_by_text("Status", exact=True)
        if not label.count():
            return ""
        lines = [line.strip() for line in label.first.locator("xpath=..").inner_text().splitlines() if line.strip()]
        return lines[1] if len(lines) > 1 else ""

    def wait_for_backfill(self, backfill_id: str, timeout: float = 600) -> str:
        """Open the backfill's page and wait until its status is final; return it."""
        self.open(f"/runs/b/{backfill_id}")
        self.poll(
            f"backfill {backfill_id} to finish",
            lambda: self.backfill_status() not in {"", "In progress", "Requested", "Canceling", "Failing"},
            timeout,
            interval=1,
        )
        return self.backfill_status()

    def check_results(self, timeout: float = 120) -> dict[str, str]:
        """The Checks tab's list: check name -> its latest status as shown ("Succeeded", "Failed", ...),
        once the list shows a settled status for every check its header counts ("Checks (5)"): the
        statuses load after the list itself, later on a loaded machine."""
        self.open_asset("checks")
        self.page.get_by_text("Execute all").wait_for()
        header = self.page.get_by_text(re.compile(r"^Checks \(\d+\)$"))
        header.wait_for()
        expected = int(re.search(r"\d+", header.inner_text()).group())
        listing = header.locator("xpath=ancestor::*[2]")
        statuses = {"Succeeded", "Failed", "Not evaluated", "Running", "In progress", "Skipped", "Errored"}
        unsettled = {"Running", "In progress"}
        results: dict[str, str] = {}

        def listed() -> bool:
            lines = [line.strip() for line in listing.inner_text().splitlines() if line.strip()]
            results.clear()
            results.update({name: status for name, status in zip(lines, lines[1:])
                            if status in statuses and name not in statuses})
            return len(results) == expected and not unsettled & set(results.values())

        self.poll(f"the Checks tab to show the status of all {expected} checks", listed, timeout)
        return dict(results)
