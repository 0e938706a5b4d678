"""The example web app (examples/webapp) on the live views, as a board's web app reads them: over real HTTP, as a
jobcast_reader login, while publishes swap batches; and in headless Chromium."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobcast.publish.store import BatchInfo, publish

from conftest import CHROMIUM_ARGS, REPO, chromium, free_port
from test_publish import REASONS

pytestmark = pytest.mark.integration

JOBS = list(range(1, 41))


def p50(k: int, job_id: int) -> float:
    """Batch k's salary median of a posting: the value says which batch it came from."""
    return 3_000_000.0 + 100_000.0 * k + job_id


def cvr(k: int, job_id: int) -> float:
    return round(0.001 * (k % 50 + 1) + job_id / 1e6, 9)


def write(path: Path, task: str, k: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    ids = pa.array(JOBS, pa.int64())
    reasons = pa.array([REASONS] * len(JOBS), pa.string())
    if task == "salary":
        mid = [p50(k, j) for j in JOBS]
        cols = {"salary_p10": pa.array([v * 0.8 for v in mid]), "salary_p50": pa.array(mid),
                "salary_p90": pa.array([v * 1.25 for v in mid])}
    elif task == "category":
        top = [[{"category": "営業", "probability": 0.6}, {"category": "事務", "probability": 0.3},
                {"category": "製造", "probability": 0.1}]] * len(JOBS)
        cols = {"category": pa.array(["営業"] * len(JOBS)), "probability": pa.array([0.6] * len(JOBS)),
                "top3": pa.array([json.dumps(t, ensure_ascii=False) for t in top])}
    elif task == "cvr":
        cols = {"cvr": pa.array([cvr(k, j) for j in JOBS])}
    else:
        cols = {"tags": pa.array([json.dumps([{"tag": "未経験歓迎", "probability": 0.9}], ensure_ascii=False)] * len(JOBS)),
                "probabilities": pa.array([json.dumps({"未経験歓迎": 0.9, "在宅勤務可": 0.1}, ensure_ascii=False)] * len(JOBS))}
    pq.write_table(pa.table({"job_id": ids, **cols, "reasons": reasons}), path / "part-00000.parquet")
    return path


def publish_k(db_url: str, tmp: Path, task: str, k: int, date: str = "2026-10-30") -> dict:
    return publish(lambda: psycopg2.connect(db_url), write(tmp / f"{task}-{k}", task, k),
                   BatchInfo(task=task, logical_date=date, model_version=f"m{k}", data_version="d",
                             run_id="test", validation_success=True, report_path="/r.html"))


@pytest.fixture
def webapp(settings, db_url, tmp_path):
    """The example app served by uvicorn in its own process, connected as a jobcast_reader login made with
    `jobcast db create-reader --password-env`, as its README section says."""
    env = {**os.environ, "JOBCAST_READER_PASSWORD": "reader-secret"}
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "db", "create-reader", "webapp_e2e", "--password-env"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    reader_url = db_url.replace("://jobcast@", "://webapp_e2e:reader-secret@")
    port = free_port()
    log = (tmp_path / "webapp.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "uvicorn"), "--app-dir", str(REPO / "examples" / "webapp"),
                               "app:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env={**os.environ, "JOBCAST_READER_URL": reader_url}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/freshness", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "webapp.log").read_text()
        time.sleep(0.3)
    try:
        yield base
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_the_web_app_reads_consistent_pages_while_publishes_swap_batches(webapp, db_url, tmp_path):
    import httpx

    with httpx.Client(timeout=5) as client:  # before anything is published: missing, not an error
        fresh = client.get(f"{webapp}/api/freshness").json()
        assert [f["task"] for f in fresh] == ["salary", "category", "cvr", "job_tags"]
        assert all(not f["live"] and f["stale"] for f in fresh)
        assert client.get(f"{webapp}/api/jobs/1").status_code == 404
        page = client.get(f"{webapp}/jobs/1")
        assert page.status_code == 404 and "No live batch has a prediction" in page.text
        assert "No cvr batch is live yet" in client.get(f"{webapp}/top-cvr").text
    for task in ("salary", "category", "cvr", "job_tags"):
        publish_k(db_url, tmp_path, task, 0)

    stop, responses, errors = threading.Event(), [], []

    def reader(i: int) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                job = JOBS[(i * 7 + n) % len(JOBS)]
                for path in (f"/api/jobs/{job}", "/api/top-cvr?limit=10", "/api/freshness", f"/jobs/{job}"):
                    try:
                        r = client.get(webapp + path)
                    except httpx.HTTPError as exc:
                        errors.append((path, repr(exc)))
                        continue
                    if r.status_code != 200:
                        errors.append((path, r.status_code, r.text[:300]))
                    elif path.startswith("/api/"):
                        responses.append((path, r.json()))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 9):  # salary and cvr batches swap under the readers; retention drops old ones
            publish_k(db_url, tmp_path, "salary", k)
            publish_k(db_url, tmp_path, "cvr", k)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        cur.execute("select batch_id, model_version from predictions.batches")
        model_of = dict(cur.fetchall())
    k_of = {b: int(m[1:]) for b, m in model_of.items()}
    seen_batches = set()
    for path, body in responses:
        if path.startswith("/api/jobs/"):
            job = body["job_id"]
            s, v = body["predictions"]["salary"], body["predictions"]["cvr"]
            # every value belongs to the batch the row says it comes from
            assert s["model_version"] == model_of[s["batch_id"]] and s["p50"] == p50(k_of[s["batch_id"]], job)
            assert s["p10"] == pytest.approx(s["p50"] * 0.8) and s["p90"] == pytest.approx(s["p50"] * 1.25)
            assert v["cvr"] == cvr(k_of[v["batch_id"]], job)
            assert body["predictions"]["category"]["top3"][0]["category"] == "営業"
            assert body["predictions"]["job_tags"]["tags"] == [{"tag": "未経験歓迎", "probability": 0.9}]
            assert s["reasons"]["top"][0]["name"] == "prefecture: 東京都"
            seen_batches.add(s["batch_id"])
        elif path.startswith("/api/top-cvr"):
            assert len(body) == 10 and len({r["batch_id"] for r in body}) == 1  # one batch per page
            k = k_of[body[0]["batch_id"]]
            assert [r["cvr"] for r in body] == sorted((cvr(k, j) for j in JOBS), reverse=True)[:10]
            assert [r["job_id"] for r in body] == sorted(JOBS, key=lambda j: -cvr(k, j))[:10]
        else:
            assert {f["task"] for f in body if f["live"]} == {"salary", "category", "cvr", "job_tags"}
    assert len(responses) > 50 and len(seen_batches) > 1, (len(responses), seen_batches)


def test_headless_chromium_loads_the_pages(webapp, db_url, tmp_path):
    from playwright.sync_api import sync_playwright

    import datetime as dt
    from zoneinfo import ZoneInfo

    yesterday = (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)).isoformat()
    for task in ("salary", "category", "cvr"):
        publish_k(db_url, tmp_path, task, 3, date=yesterday)  # what the daily run publishes
    publish_k(db_url, tmp_path, "job_tags", 3, date="2026-10-30")  # a task whose daily runs stopped
    shots = Path(os.environ.get("JOBCAST_SCREENSHOTS_DIR") or tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            assert page.goto(f"{webapp}/jobs/7").status == 200
            assert page.inner_text("#salary .big") == f"¥{p50(3, 7) / 10_000:,.0f}万"
            assert "営業" in page.inner_text("#category") and "prefecture: 東京都" in page.inner_text("#salary")
            assert "未経験歓迎" in page.inner_text("#tags")
            assert "model m3" in page.inner_text("#cvr")
            page.screenshot(path=str(shots / "webapp-posting.png"), full_page=True)
            assert page.goto(f"{webapp}/top-cvr").status == 200
            assert page.locator("#top tr").count() == 21  # header + the default 20
            page.click("#top tr:nth-child(2) a")
            page.wait_for_url("**/jobs/*")
            assert "Estimated annual salary" in page.inner_text("main")
            assert page.goto(f"{webapp}/freshness").status == 200
            assert page.locator("#freshness td.ok").count() == 3 and page.locator("#freshness td.stale").count() == 1
            assert "job_tags" in page.inner_text("#freshness tr:has(td.stale)")
            page.screenshot(path=str(shots / "webapp-freshness.png"), full_page=True)
            assert not errors
        finally:
            browser.close()



def test_the_web_app_reads_with_the_queries_the_docs_recommend():
    """docs/prediction-tables.md's "Reading from a web app" holds the example app's statements verbatim."""
    import re

    app = (REPO / "examples" / "webapp" / "app.py").read_text(encoding="utf-8")
    doc = (REPO / "docs" / "prediction-tables.md").read_text(encoding="utf-8")
    statements = re.findall(r'^(\w+_SQL) = """\n(.*?)"""', app, re.S | re.M)
    assert [name for name, _ in statements] == ["POSTING_SQL", "TOP_CVR_SQL", "FRESHNESS_SQL"]
    for name, sql in statements:
        assert sql.strip() in doc, f"{name} is not in docs/prediction-tables.md: regenerate it with `jobcast docs`"
