"""The web dashboard's load time on a warm local service, in Debian's Chromium; prints a table.

    .venv/bin/python bench/dashboard.py [--loads 20]

Starts a real local single-node service as README command 1 does (`python -m serve_app.local --keep-running`,
synthetic candles, a tiny demo job) in a subprocess with its own --state-dir in a temporary folder and a free port,
opens `/` in Chromium driven by Playwright (the `chromium` on PATH, as tests/web/ does; never `playwright install`),
signs in once with the form, then loads `/` again ``--loads`` times in the same tab (the token stays in the tab's
session storage) and times each load from the start of navigation to the moment the cluster view has drawn its
node table (a MutationObserver in the page notes `performance.now()`). Loads are timed twice: with the browser's
cache disabled (every file fetched again) and with it (the files revalidated: the page is served `no-cache`).
The service is stopped with SIGTERM at the end and must exit 0.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.table import print_table  # noqa: E402

RENDERED = "#nodes tbody tr"  # the cluster view's node rows: the page is usable
# Runs before the page's own scripts on every load (Playwright injects it; the page's CSP does not apply): notes the
# time since navigation start at which the first node row appears.
OBSERVE = """
new MutationObserver((records, observer) => {
  if (document.querySelector('RENDERED')) { window.__rendered = performance.now(); observer.disconnect(); }
}).observe(document, {childList: true, subtree: true});
""".replace("RENDERED", RENDERED)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(state: Path, port: int) -> subprocess.Popen:
    """`python -m serve_app.local --keep-running` on ``port``; returns once its demo job is done and it serves."""
    with open(state / "service.log", "w") as log:  # the child keeps its own copy of the file
        process = subprocess.Popen(
            [sys.executable, "-m", "serve_app.local", "--keep-running", "--state-dir", str(state / "state"),
             "--port", str(port), "--population", "4", "--generations", "1"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 300
    while "service running at" not in (state / "service.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"the service did not start:\n{(state / 'service.log').read_text()}")
        time.sleep(0.5)
    return process


def stop_service(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between the sorted values."""
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


PHASES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const cluster = performance.getEntriesByType('resource').find((e) => new URL(e.name).pathname === '/v1/cluster');
  return {html: nav.responseEnd, modules: nav.domContentLoadedEventEnd, cluster: cluster ? cluster.duration : NaN,
          drawn: window.__rendered};
}"""


def timed_loads(page, url: str, loads: int) -> list[dict[str, float]]:
    """For each of ``loads`` loads, milliseconds from navigation start to: the page's HTML received (``html``), its
    modules run (``modules``, DOMContentLoaded) and the cluster view's first node row (``drawn``); and the first
    ``GET /v1/cluster``'s own duration (``cluster``)."""
    times = []
    for _ in range(loads):
        page.goto(url)
        page.wait_for_function("() => window.__rendered !== undefined")
        times.append(page.evaluate(PHASES))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=20, help="timed loads of / in each cache mode")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium on PATH: install it with `apt-get install -y chromium` (.ci/run does)")
    from playwright.sync_api import sync_playwright

    state = Path(tempfile.mkdtemp(prefix="miner-bench-dashboard-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    service = start_service(state, port)
    rows: list[tuple[str, str]] = []
    try:
        token = (state / "state" / "token").read_text().strip()
        for _ in range(3):  # warm the ingress's routes
            httpx.get(url).raise_for_status()
            httpx.get(f"{url}v1/cluster", headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            context = browser.new_context()
            page = context.new_page()
            page.add_init_script(OBSERVE)
            responses = []

            def record(response) -> None:
                responses.append(response)

            page.on("response", record)

            # first load, signed out: the page and its files, as a new visitor gets them
            page.goto(url)
            page.wait_for_load_state("networkidle")
            first = list(responses)
            sent = sum(r.request.sizes()["responseBodySize"] for r in first)
            body = [r.body() for r in first]
            zipped = sum(len(gzip.compress(b, 6)) for b in body)
            rows += [("first load (signed out): requests", str(len(first))),
                     ("first load: bytes sent (the service does not compress)", f"{sent:,}"),
                     ("first load: bytes gzip-compressed (level 6)", f"{zipped:,}  (limit 500,000)")]

            # sign in once with the form; the token stays in the tab's session storage for every later load
            responses.clear()
            page.fill("#sign-in input[name=token]", token)
            page.click("#sign-in button[type=submit]")
            page.wait_for_selector(RENDERED)
            page.wait_for_load_state("networkidle")
            api = [r for r in responses if urlsplit(r.url).path.startswith("/v1/")]
            rows.append(("signed in: API requests to draw the cluster", str(len(api))))
            page.remove_listener("response", record)

            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            for mode, disabled in (("browser cache off", True), ("browser cache on (304s)", False)):
                cdp.send("Network.setCacheDisabled", {"cacheDisabled": disabled})
                timed_loads(page, url, 2)  # settle
                times = timed_loads(page, url, args.loads)
                drawn = [t["drawn"] for t in times]
                rows += [(f"{mode}: load -> cluster drawn, median ms", f"{statistics.median(drawn):.0f}"),
                         (f"{mode}: p90 ms", f"{quantile(drawn, 0.9):.0f}"),
                         (f"{mode}: min ms", f"{min(drawn):.0f}"),
                         (f"{mode}: max ms", f"{max(drawn):.0f}"),
                         (f"{mode}: median ms to HTML received / modules run",
                          f"{statistics.median(t['html'] for t in times):.0f} / "
                          f"{statistics.median(t['modules'] for t in times):.0f}"),
                         (f"{mode}: median ms of GET /v1/cluster itself",
                          f"{statistics.median(t['cluster'] for t in times):.0f}")]
            browser.close()
    finally:
        code = stop_service(service)
        shutil.rmtree(state, ignore_errors=True)
    rows.append(("service exit code after SIGTERM", str(code)))
    print_table(f"Dashboard load, {args.loads} loads per mode, warm local service, Chromium "
                f"({os.cpu_count()} CPUs)", rows)
    if code != 0:
        sys.exit(f"the service exited {code} on SIGTERM")


if __name__ == "__main__":
    main()
