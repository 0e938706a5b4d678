"""Screenshots of what users look at, taken with headless Chromium (apt-get install chromium):
the Airflow trigger form of jobcast_daily.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts its own `jobcast airflow standalone` in a temporary AIRFLOW_HOME (metadata on the shared DB's server,
everyone admin so no login is needed, nothing triggered), opens the DAG page, clicks "Trigger" and captures
the form. Drives Chromium over the DevTools protocol with the `websockets` package Airflow already installs.
A failing Data Docs page (offline: its assets come from the site folder) and the example web app's pages
are retaken by their tests: `JOBCAST_SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest
tests/integration/test_data_docs.py tests/integration/test_webapp.py -k "offline or chromium"`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PORT = 18794
CDP_PORT = 19222


def wait_for(what: str, check, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"screenshots: timed out waiting for {what}")
        time.sleep(1)


class Page:
    """The smallest DevTools-protocol client: evaluate JavaScript, capture a PNG."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 1024 * 1024, legacy=True)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")

    def goto(self, url: str, ready_js: str, timeout: float = 90) -> None:
        self.call("Page.navigate", url=url)
        wait_for(f"{url} ({ready_js})", lambda: bool(self.js(ready_js)), timeout)

    def shot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        sys.exit("screenshots: no Chromium found (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="jobcast-shots-"))
    env = {**os.environ, "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__API__PORT": str(PORT),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    env["JOBCAST_AIRFLOW_DB"] = "sqlite"  # nothing runs: the UI only reads the serialized DAG
    procs = [subprocess.Popen([str(BIN / "jobcast"), "airflow", "standalone"], env=env, cwd=ROOT, start_new_session=True,
                              stdout=(tmp / "standalone.log").open("w"), stderr=subprocess.STDOUT)]
    try:
        def dag_listed() -> bool:
            out = subprocess.run([str(BIN / "jobcast"), "airflow", "dags", "list"], env=env, capture_output=True, text=True).stdout
            return "jobcast_daily" in out

        wait_for("Airflow's api-server", lambda: urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/v2/monitor/health", timeout=5).status == 200)
        wait_for("the DAG to be parsed", dag_listed)
        procs.append(subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                       f"--remote-debugging-port={CDP_PORT}", f"--user-data-dir={tmp / 'chromium'}",
                                       "--window-size=1400,1500", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for("Chromium", lambda: urllib.request.urlopen(f"http://127.0.0.1:{CDP_PORT}/json/version", timeout=2).status == 200, 30)
        target = next(t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{CDP_PORT}/json"))
                      if t.get("type") == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1500, deviceScaleFactor=1, mobile=False)
        click_trigger = ("(() => { const b = [...document.querySelectorAll('button')]"
                         ".find(x => x.innerText.trim() === 'Trigger'); if (b) { b.click(); return true; } return false; })()")
        page.goto(f"http://127.0.0.1:{PORT}/dags/jobcast_daily", click_trigger)
        wait_for("the trigger form", lambda: bool(page.js("document.body.innerText.includes('Run Parameters')")), 60)
        time.sleep(2)  # let the dialog finish its animation
        page.shot(args.out / "airflow-trigger-form.png")
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(60)
            except ProcessLookupError:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
