"""What a judge sees, end to end, on a real Prefect server with `clerk serve` and the simulators over HTTP,
in Debian's headless Chromium (with a CJK font: scripts/ensure-chromium) driven by Playwright:

- `clerk query` on the served deployment (its fast route) prints the case sheet at 80 columns;
- the case-query run form: every field described, no nullable type toggles;
- the finished query's case sheet artifact: the case's standing and every asset, masked;
- a paused deduction's Resume form: the proposal above typed, described fields; a decision refused at the
  command line shown above the form; then the judge decides in the form, without a code first (one is
  sent to the judge's phone and the form asks again, filled as it was), then with it, and the outcome
  artifact says what moved.

Slow (a Prefect server and `clerk serve` start here); marked `server`. Screenshots go to the test's
tmp_path.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright
from rich.cells import cell_len

from cli import served
from connectors.simulator.serve import free_loopback_ports
from deployments import run_process
from deployments.embedded import prefect_server
from models.values import CaseNumber
from tests.world import World, flow_world

BIN = Path(sys.executable).parent
NOW = dt.datetime.now(dt.UTC)
pytestmark = [
    pytest.mark.server,
    pytest.mark.minutes,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def world(clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with flow_world(tmp_path, monkeypatch, debtors=120, seed=5, now=NOW) as served_:
        yield served_


@dataclass
class Serving:
    api: str
    serve: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def serving(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    """A Prefect server, and `clerk serve` serving the two deployments a judge uses."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with prefect_server(free_loopback_ports(1)[0], lambda _: None) as api:
        log = tmp_path / "serve.log"
        with log.open("wb") as output:
            serve = subprocess.Popen(
                [str(BIN / "clerk"), "serve", "--only", "case-query", "--only", "deduction"],
                env=dict(os.environ),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 120
            with served.Api(api) as client:
                while not all(client.served(d) for d in (served.CASE_QUERY, "deduction/deduction")):
                    assert serve.poll() is None, log.read_text(errors="replace")[-3000:]
                    assert time.monotonic() < deadline, "clerk serve did not serve within 120 s"
                    time.sleep(1)
            yield Serving(api, serve, log)
        finally:
            serve.send_signal(signal.SIGINT)  # Ctrl-C, as an operator stops it (if the test has not)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()


def clerk(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {"COLUMNS": "80"}
    return subprocess.run(
        [str(BIN / "clerk"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cases_with_money(world: World) -> list[tuple[str, str]]:
    """(case number, judge) of the cases whose debtors hold money at a bank of the world."""
    rich = {
        h.owner_id
        for sim in world.simulators.values()
        for h in sim.ledger.holdings.values()
        if h.kind == "deposit" and (h.balance_fen or 0) > 100_00
    }
    lines = world.case_file.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    return list(dict.fromkeys((r["case_number"], r["judge"]) for r in rows if r["debtor_id"] in rich))


def api_json(api: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with served.Api(api) as client:
        return client._call("POST" if body is not None else "GET", path, json=body)


def artifact_id(api: str, flow_run_id: str, key: str) -> str:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}, "limit": 1}
    [found] = api_json(api, "/artifacts/filter", body)
    return str(found["id"])


def wait_state(api: str, flow_run_id: str, types: set[str], seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = api_json(api, f"/flow_runs/{flow_run_id}")["state"]
        if state["type"] in types:
            return state
        assert time.monotonic() < deadline, f"the run stayed {state['type']}"
        time.sleep(0.5)


def open_resume_form(page: Page, ui: str, flow_run_id: str) -> Any:
    page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    try:
        dialog.get_by_text("Decision", exact=True).wait_for()
    except Exception:
        page.screenshot(path=f"/tmp/resume-failed-{flow_run_id}.png", full_page=True)
        raise
    return dialog


def test_a_judge_queries_reads_the_case_sheet_and_decides_a_deduction_in_the_ui(
    world: World, serving: Serving, tmp_path: Path
) -> None:
    api, ui = serving.api, serving.api.removesuffix("/api")
    (number, judge), (other, other_judge), (third, third_judge), *_ = cases_with_money(world)
    number = str(CaseNumber.parse(number))  # as the clerk writes it: full-width brackets

    # The judge's query on the served deployment: the link to the run, then the case sheet, at 80 columns.
    asked = clerk("query", number, "--requested-by", judge)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    link = re.search(r"/runs/flow-run/([0-9a-f-]{36})", asked.stdout)
    assert link, asked.stdout
    run = link[1]
    assert "assets of debtor" in asked.stdout and "held by us, or why not" in asked.stdout
    assert "freeze" in asked.stdout and "in force" in asked.stdout
    tables = [line for line in asked.stdout.splitlines() if line.startswith(" ")]
    assert tables and max(cell_len(line) for line in tables) <= 80
    # The run's logs (where its page opens) say what it did, not each task's "Finished in state Completed()".
    logs = api_json(api, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run]}}, "limit": 200})
    said = [(entry["task_run_id"], entry["message"]) for entry in logs]
    assert any("case query of" in message for _, message in said), said
    assert not [m for t, m in said if t and m.startswith("Finished in state Completed(")], said
    plan = clerk("query", other, "--requested-by", other_judge, "--dry-run")
    assert plan.returncode == 0 and "would be sent" in " ".join(plan.stdout.split()), (
        plan.stdout + plan.stderr
    )
    assert plan.stdout.startswith("DRY RUN: "), "a dry run says so first"
    wrong = clerk("query", number, "--requested-by", judge, "--registry", "bank-icbcc")
    assert wrong.returncode == 2 and "--registry: unknown registry bank-icbcc" in wrong.stderr
    assert "case query" not in wrong.stdout, "refused before any run starts"
    # A misspelled judge: refused by the run (audited there), which ends Refused, not a red Failed.
    stranger = clerk("query", number, "--requested-by", judge + "甲")
    assert stranger.returncode == 2, stranger.stdout + stranger.stderr
    assert stranger.stderr.startswith(f"error: requested_by: {judge}甲 may not query this case")
    refused = re.search(r"/runs/flow-run/([0-9a-f-]{36})", stranger.stdout)
    assert refused, stranger.stdout
    ended = wait_state(api, refused[1], {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
    assert (ended["type"], ended["name"]) == ("COMPLETED", "Refused")
    # The UI's search (a run's name, character for character) finds the run by the form a judge types.
    typed = number.replace("（", "(").replace("）", ")")
    found = api_json(api, "/flow_runs/filter", {"flow_runs": {"name": {"like_": typed}}})
    assert run in {r["id"] for r in found}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})

        # The run form: each field says what it takes; none is a nullable type toggle.
        deployment = api_json(api, f"/deployments/name/{served.CASE_QUERY}")["id"]
        page.goto(f"{ui}/deployments/deployment/{deployment}/run")
        page.get_by_text("requested_by", exact=True).wait_for()
        form = page.locator("body").inner_text()
        for text in (
            "as the case book names the case's judge, e.g. 李法官",
            "clerk registries list",
            "On by default, as the sweep",
            "Report what would be frozen and seized",
        ):
            assert text in form, text
        assert 'Property is type "None"' not in form
        page.screenshot(path=tmp_path / "case-query-form.png", full_page=True)

        # The finished query's case sheet.
        page.goto(f"{ui}/artifacts/artifact/{artifact_id(api, run, 'case-sheet')}")
        page.get_by_role("heading", name=re.compile("Case sheet")).first.wait_for()
        sheet = page.locator("body").inner_text()
        assert f"Case sheet {number}" in sheet and "owed today" in sheet and "held by us, or why not" in sheet
        assert "****" in sheet and not any(i in sheet for i in world.debtor_ids)
        page.screenshot(path=tmp_path / "case-sheet.png", full_page=True)

        # The runs page's search, typed as a judge types a case number, finds the judge's query.
        page.goto(f"{ui}/runs")
        page.locator("input[placeholder='Search by flow run name']:visible").first.fill(typed)
        page.get_by_text(f"case-query {number} {judge} · {typed}").first.wait_for(timeout=30_000)
        page.screenshot(path=tmp_path / "runs-search.png", full_page=True)

        # A deduction waits for the judge: the Resume form.
        started = clerk("deduct", number, "--requested-by", judge)
        assert started.returncode == 0, started.stdout + started.stderr
        deduction = re.search(r"flow run ([0-9a-f-]{36})", started.stdout)
        assert deduction, started.stdout
        wait_state(api, deduction[1], {"PAUSED"})
        dialog = open_resume_form(page, ui, deduction[1])
        shown = dialog.inner_text()
        for text in (
            "Deduction proposed for",
            "Decision",
            "Judge",
            "Amount (yuan)",
            "At most the",
            "Reason",
            "Code",
        ):
            assert text in shown, text
        assert 'Property is type "None"' not in shown
        page.screenshot(path=tmp_path / "resume-form.png")

        # A decision by someone who may not decide: refused where it was made, and above the form.
        refused = clerk("approve", deduction[1], "--judge", "陌生人", "--wait", "60")
        assert refused.returncode == 1 and "refused: judge: 陌生人 may not decide" in refused.stderr
        dialog = open_resume_form(page, ui, deduction[1])
        assert "The last decision was refused: judge: 陌生人 may not decide" in dialog.inner_text()

        # The judge approves in the form, without a code first: the run sends one to the judge's phone and
        # asks again, the form filled as it was; the judge types the code from the phone.
        dialog.locator(".p-select-button__control").first.press("ArrowDown")
        page.locator(".p-select-option", has_text="approve").click()
        dialog.locator("textarea").first.fill(judge)
        page.screenshot(path=tmp_path / "resume-form-filled.png")
        dialog.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 60
        while not world.sms.codes(number):
            assert time.monotonic() < deadline, "no code reached the judge's phone"
            time.sleep(0.5)
        wait_state(api, deduction[1], {"PAUSED"})
        dialog = open_resume_form(page, ui, deduction[1])
        asked = " ".join(dialog.inner_text().split())
        assert "The last decision was refused: no proof: a code to approve" in asked, asked[:500]
        assert judge in dialog.locator("textarea").first.input_value(), "the form is filled as it was"
        [code] = world.sms.codes(number)
        dialog.locator("textarea").nth(2).fill(code)  # the text fields: judge, reason, code, signature
        page.screenshot(path=tmp_path / "resume-form-code.png")
        dialog.get_by_role("button", name="Submit").click()
        ended = wait_state(api, deduction[1], {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
        assert ended["type"] == "COMPLETED", ended
        page.goto(f"{ui}/artifacts/artifact/{artifact_id(api, deduction[1], 'deduction-result')}")
        page.get_by_role("heading", name=re.compile("Deduction approved")).first.wait_for()
        outcome = page.locator("body").inner_text()
        assert f"Approved by {judge}" in outcome and "yuan moved" in outcome and "moved" in outcome
        page.screenshot(path=tmp_path / "deduction-result.png", full_page=True)
        browser.close()
    print(json.dumps({"screenshots": sorted(p.name for p in tmp_path.glob("*.png"))}))

    # `clerk down` (SIGTERM) while a deduction waits: the run is Cancelled, not Crashed, and no traceback.
    assert clerk("query", third, "--requested-by", third_judge).returncode == 0  # freezes its money
    again = clerk("deduct", third, "--requested-by", third_judge)
    waiting = re.search(r"flow run ([0-9a-f-]{36})", again.stdout)
    assert waiting, again.stdout + again.stderr
    wait_state(api, waiting[1], {"PAUSED"})
    serving.serve.send_signal(signal.SIGTERM)
    assert serving.serve.wait(timeout=60) == 0
    assert wait_state(api, waiting[1], {"CANCELLED", "CRASHED", "FAILED"}, 30)["type"] == "CANCELLED"
    log = serving.log.read_text(errors="replace")
    assert "SIGTERM: stopping; the runs in flight are cancelled" in log and "Traceback" not in log, log[
        -3000:
    ]
    assert "Finished in state Running()" not in log and run_process.STOPPED in log, log[-3000:]
