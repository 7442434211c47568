"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the shared two-node service:
sign in, the cluster, submitting from the form, the live chart through a cut connection, the result, cancel.

``MINER_DASHBOARD_PNG=docs/dashboard.png`` makes the result test save a screenshot of the page there."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.sync_api import expect

BTC = "BTC-USD_FIVE_MINUTE"


def open_jobs(dashboard) -> None:
    dashboard.sign_in(dashboard.service.token)
    dashboard.page.click("nav a[href='#/jobs']")
    expect(dashboard.page.locator("select[name=dataset] option[value='BTC-USD_FIVE_MINUTE']")).to_have_count(1)


def test_a_wrong_token_is_refused_and_the_right_one_shows_the_cluster(dashboard, service, client):
    page = dashboard.page
    responses = []

    def record(response) -> None:
        responses.append(response)

    page.on("response", record)
    page.goto(f"{service.url}/")
    page.wait_for_load_state("networkidle")
    page.remove_listener("response", record)
    sizes = [len(response.body()) for response in responses]  # uncompressed: the page and its files
    assert len(sizes) <= 10 and sum(sizes) < 100_000, f"first load: {len(sizes)} requests, {sum(sizes)} bytes"
    expect(page.locator("#nav")).to_be_hidden()

    dashboard.sign_in("not-the-token")
    expect(page.locator("#sign-in-error")).to_contain_text("Wrong token")
    expect(page.locator("#nav")).to_be_hidden()

    dashboard.sign_in(service.token)
    rows = page.locator("#nodes tbody tr")
    nodes = client.cluster().nodes
    expect(rows).to_have_count(len(nodes))
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == sorted(n.label for n in nodes) == ["air", "head"]
    assert sorted(rows.locator("td:nth-child(5)").all_inner_texts()) == sorted(str(n.workers) for n in nodes)
    expect(rows.first.locator("td").last).to_have_text(re.compile(r"^\d+\.\d$"))  # a rate, from the second poll on
    expect(page.locator("#evaluators")).to_contain_text("default")
    assert page.evaluate("sessionStorage.getItem('miner-token')") == service.token


class CuttingRoute:
    """Sits between the page and the event stream: records every connection's URL and the seqs passed to the page,
    and cuts the first connection once the page has seen ``cut_after`` generations."""

    def __init__(self, cut_after: int):
        self.cut_after = cut_after
        self.urls: list[str] = []
        self.seqs: list[list[int]] = []
        self.cut = False

    def __call__(self, ws) -> None:
        self.urls.append(ws.url)
        passed: list[int] = []
        self.seqs.append(passed)
        server = ws.connect_to_server()

        def from_server(message) -> None:
            if self.cut and len(self.seqs) == 1:
                return  # the cut connection is dead: nothing more reaches the page on it
            event = json.loads(message)
            ws.send(message)
            passed.append(event["seq"])
            seen = event["type"] == "generation_best" and event["data"]["generation"] + 1 >= self.cut_after
            if seen and not self.cut:
                self.cut = True
                ws.close(code=1006, reason="cut by the test")
                server.close()

        server.on_message(from_server)


def test_submit_watch_live_through_a_cut_then_the_result(dashboard, service, client):
    page = dashboard.page
    route = CuttingRoute(cut_after=3)
    page.route_web_socket(re.compile(r"/v1/jobs/[^/]+/events"), route)
    open_jobs(dashboard)
    form = page.locator("#submit-job")
    spec = httpx.get(f"{service.url}/v1/job-spec", headers={"Authorization": f"Bearer {service.token}"}).json()
    population = form.locator("input[name=population]")  # bounds and default from the service, not from the page
    expect(population).to_have_attribute("max", str(spec["properties"]["population"]["maximum"]))
    expect(population).to_have_attribute("placeholder", str(spec["properties"]["population"]["default"]))
    expect(form.locator("select[name=risk]")).to_have_value(spec["properties"]["risk"]["default"])
    form.locator("select[name=dataset]").select_option(BTC)
    population.fill("2")
    form.locator("button[type=submit]").click()
    expect(form.locator("[data-for=population]")).to_contain_text("greater than or equal to 4")

    generations = 12
    for name, value in (("population", "48"), ("generations", str(generations)), ("permutations", "0"),
                        ("seed", "11")):
        form.locator(f"input[name={name}]").fill(value)
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    points = page.locator("#fitness-chart circle.point")
    counts = []
    while not counts or counts[-1] < generations:
        counts.append(points.count())
        assert len(counts) < 1200, f"the chart stopped growing at {counts[-1]} points"
        time.sleep(0.1)
    assert counts == sorted(counts) and len(set(counts)) >= 3, f"the chart did not grow point by point: {counts}"

    expect(page.locator("#candle-chart svg")).to_be_visible(timeout=120_000)
    events = list(client.events(job_id))
    best = [e for e in events if e.type == "generation_best"]
    assert points.count() == len(best) == generations
    xs = page.locator("#fitness-chart circle.point").evaluate_all("ps => ps.map(p => p.getAttribute('cx'))")
    assert len(set(xs)) == generations  # one point per generation: none twice
    assert route.cut and len(route.urls) == 2
    assert parse_qs(urlsplit(route.urls[1]).query)["since"] == [str(route.seqs[0][-1])]
    assert [s for passed in route.seqs for s in passed] == [e.seq for e in events]  # no gap, no repeat

    result = client.result(job_id)
    trades = len(result.train.trades) + len(result.holdout.trades)
    assert trades > 0
    expect(page.locator("#candle-chart .marker.entry")).to_have_count(trades)
    expect(page.locator("#candle-chart .marker.exit")).to_have_count(trades)
    expect(page.locator("#candle-chart .region.train")).to_have_count(1)
    expect(page.locator("#candle-chart .region.holdout")).to_have_count(1)
    initial_cash = client.job(job_id).spec.costs.initial_cash
    for name, backtest in (("train", result.train), ("holdout", result.holdout)):
        caption = page.locator(f".equity-range.{name}")
        assert float(caption.get_attribute("data-first")) == backtest.equity.equity[0] == initial_cash
        assert float(caption.get_attribute("data-last")) == backtest.equity.equity[-1]
    expect(page.locator("#strategy")).to_have_text(result.strategy)
    expect(page.locator("#evidence")).to_have_text(result.validation.evidence)
    expect(page.locator("#metrics tbody tr")).to_have_count(len(result.train.metrics))

    if screenshot := os.environ.get("MINER_DASHBOARD_PNG"):  # e.g. docs/dashboard.png, linked from the README
        page.screenshot(path=screenshot, full_page=True)

    with page.expect_download() as download:
        page.click("#download")
    saved = json.loads(Path(download.value.path()).read_text())
    answer = httpx.get(f"{service.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {service.token}"})
    assert saved == answer.json()


def test_cancel_a_running_job_from_the_table(dashboard, client):
    job = client.submit(dataset=BTC, population=200, generations=400, permutations=0, seed=5)
    open_jobs(dashboard)
    row = dashboard.page.locator(f"#jobs tr[data-id='{job.id}']")
    row.locator("button.cancel").click()
    expect(row.locator(".status")).to_have_text("cancelled", timeout=120_000)
    assert client.job(job.id).status == "cancelled"


class PausingRoute:
    """Passes a job's event stream to the page and, after the first generation's best, slips in a ``paused`` event
    (a seq between two real ones: the page takes each seq once, in order); ``resume()`` slips in ``resumed``. The
    service's real pauses (a full disk, every worker refusing work) are tested in tests/serve_app and tests/deploy;
    this is about what the page shows of one."""

    def __init__(self, reason: str):
        self.reason, self.ws, self.last, self.paused = reason, None, None, False

    def slip_in(self, kind: str, data: dict) -> None:
        self.ws.send(json.dumps({**self.last, "seq": self.last["seq"] + 0.5, "type": kind, "data": data}))

    def __call__(self, ws) -> None:
        self.ws = ws
        server = ws.connect_to_server()

        def from_server(message) -> None:
            ws.send(message)
            self.last = json.loads(message)
            if self.last["type"] == "generation_best" and not self.paused:
                self.paused = True
                self.slip_in("paused", {"reason": self.reason})

        server.on_message(from_server)

    def resume(self) -> None:
        self.slip_in("resumed", {})


def test_a_paused_job_shows_why_until_it_resumes(dashboard, client):
    reason = "every worker refuses work (1 refused: each runs engine abc, this service def); restart the service"
    route = PausingRoute(reason)
    page = dashboard.page
    page.route_web_socket(re.compile(r"/v1/jobs/[^/]+/events"), route)
    job = client.submit(dataset=BTC, population=200, generations=400, permutations=0, seed=6)
    try:
        open_jobs(dashboard)
        page.goto(f"{dashboard.service.url}/#/jobs/{job.id}")
        note = page.locator("#paused")
        expect(note).to_have_text(f"Paused: {reason}", timeout=120_000)
        expect(note).to_be_visible()
        route.resume()
        expect(note).to_be_hidden()
        expect(page.locator("#progress-text")).to_contain_text("generation")  # the live view goes on
    finally:
        client.cancel(job.id)
