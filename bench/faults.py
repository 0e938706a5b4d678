"""Fault matrix: kill, restart, fill, corrupt and race jobcast, then check that nothing published or
snapshotted was lost, mixed or wrongly published.

    .venv/bin/python bench/faults.py [--only NAME ...] [--list]

Set-up (in .jobcast/bench/faults, its own PostgreSQL on a free port): a small generated board (3,000
postings, 30 days), `jobcast run --train` for the last day, so every task has a live batch. Then one case at
a time, each through the real CLI in a subprocess (or a real publisher process, to stop it at a publish
phase), with the fault injected for real: SIGKILL to the process group, `pg_ctl stop -m fast` and start, a
tmpfs mounted over an output directory with no room left, bytes overwritten in a file, a second process, a
reader session left idle in a transaction, a source schema whose views break the contract.

After every case the harness checks the shared DB and the snapshots against the state before it:
- lost: a registry row gone, the live batch's table gone, a raw snapshot changed without --refresh;
- mixed: a view that shows rows of more than one batch, or not exactly its batch's row count;
- wrongly published: a live batch that changed although the case expected no publish, or a live batch whose
  validation verdict is not a success for exactly its content.
Then it restores what the case changed on purpose (source views, files, mounts) and goes on.

Prints one table: case, what was done, expected, observed, consistent (and the totals of lost, mixed and
wrongly published). Needs root for the tmpfs cases (skipped otherwise, and said so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
HOME = ROOT / ".jobcast" / "bench" / "faults"
DATE = "2026-09-30"
TASKS = ("salary", "category", "cvr")
JOBCAST = str(Path(sys.executable).parent / "jobcast")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {
    **os.environ,
    "JOBCAST_HOME": str(ROOT),
    "JOBCAST_DATA_DIR": str(HOME / "data"), "JOBCAST_MODELS_DIR": str(HOME / "models"),
    "JOBCAST_REPORTS_DIR": str(HOME / "reports"), "JOBCAST_STATE_DIR": str(HOME / "state"),
    "JOBCAST_DVC_REMOTE": str(HOME / "dvc-remote"),
    "JOBCAST_PARAMS_OVERRIDE": str(ROOT / "tests" / "params-small.yaml"),
    "JOBCAST_SPARK_MASTER": "local[2]", "JOBCAST_SPARK_CONF": "spark.sql.shuffle.partitions=2",
    "GX_ANALYTICS_ENABLED": "False", "DVC_NO_ANALYTICS": "1",
}
DATA = HOME / "data"


def jobcast(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([JOBCAST, *args], env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, errors="replace")  # a damaged model file's bytes can reach the error text


def start(*args: str, env: dict | None = None, python: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, *args] if python else [JOBCAST, *args]
    return subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, start_new_session=True, errors="replace")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def db_url() -> str:
    return jobcast("db", "url").stdout.strip().splitlines()[-1]


def sql(query: str, args=None, url: str | None = None):
    import psycopg2

    conn = psycopg2.connect(url or URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def tree_hash(path: Path) -> str | None:
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def step_seconds(text: str) -> float | None:
    """The step's own time from its summary line (`publish  task=salary ...  0.4s ...`): no CLI start-up."""
    import re

    m = re.search(r"\s(\d+\.\d+)s\b", text.strip().splitlines()[-1] if text.strip() else "")
    return float(m.group(1)) if m else None


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("jobcast:")]
    return (errors or lines or [""])[-1][:160]


# ---------------------------------------------------------------------------------------------- invariants
def state() -> dict:
    out = {"registry": {r[0]: r[1] for r in sql("select batch_id, status from predictions.batches")}, "live": {}}
    for task, view in (("salary", "job_salary"), ("category", "job_category"), ("cvr", "job_cvr")):
        live = sql("select c.batch_id, b.row_count, b.data_version, b.logical_date::text from jobcast_internal.current_batch c "
                   "join predictions.batches b using (batch_id) where c.task = %s", (task,))
        n, k = sql(f"select count(*), count(distinct batch_id) from predictions.{view}")[0]
        out["live"][task] = {"batch": live[0][0] if live else None, "row_count": live[0][1] if live else 0,
                             "data_version": live[0][2] if live else None, "date": live[0][3] if live else None,
                             "view_rows": n, "view_batches": k,
                             "table": bool(live) and sql("select to_regclass(%s) is not null",
                                                         (f"jobcast_internal.{task}_rows_b{live[0][0]}",))[0][0]}
    out["snapshots"] = {p.parent.name + "/" + p.name: tree_hash(p) for p in sorted((DATA / "raw").glob("*/dt=*"))}
    return out


def verdict_ok(task: str, live: dict) -> bool:
    path = HOME / "reports" / "validations" / task / f"dt={live['date']}.json"
    if not path.is_file():
        return False
    v = json.loads(path.read_text())
    return bool(v.get("success")) and v.get("content_version") == live["data_version"]


def check(before: dict, after: dict, publishes: set[str], refreshed: set[str]) -> dict:
    lost = [f"registry row {b}" for b in before["registry"] if b not in after["registry"]]
    lost += [f"{t} live table" for t, lv in after["live"].items() if lv["batch"] is not None and not lv["table"]]
    lost += [f"snapshot {k}" for k, h in before["snapshots"].items()
             if after["snapshots"].get(k) != h and k.split("/")[1] not in refreshed]
    mixed = [t for t, lv in after["live"].items()
             if lv["batch"] is not None and (lv["view_batches"] != 1 or lv["view_rows"] != lv["row_count"])]
    wrong = [t for t, lv in after["live"].items()
             if (t not in publishes and lv["batch"] != before["live"][t]["batch"])
             or (lv["batch"] is not None and lv["batch"] != before["live"][t]["batch"] and not verdict_ok(t, lv))]
    return {"lost": lost, "mixed": mixed, "wrong": wrong}


# ------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    done: str
    expected: str
    fn: Callable[["Case"], tuple[str, bool]]
    publishes: set[str] = field(default_factory=set)  # tasks whose live batch may change
    refreshes: set[str] = field(default_factory=set)  # snapshots (dt=...) the case re-takes on purpose
    root: bool = False


CASES: list[Case] = []


def case(name, done, expected, publishes=(), refreshes=(), root=False):
    def deco(fn):
        CASES.append(Case(name, done, expected, fn, set(publishes), set(refreshes), root))
        return fn
    return deco


def expect_error(proc: subprocess.CompletedProcess, *needles: str, rc: int = 2) -> tuple[str, bool]:
    out = proc.stdout + proc.stderr
    line = last_line(out)
    return f"rc={proc.returncode}: {line}", proc.returncode == rc and all(n in out for n in needles)


def source_schema(name: str, postings: str = "select * from app.job_postings", events: str = "select * from app.events") -> dict:
    sql(f"drop schema if exists {name} cascade")
    sql(f"create schema {name}")
    sql(f"create view {name}.job_postings as {postings}")
    sql(f"create view {name}.events as {events}")
    return {"JOBCAST_SOURCE_SCHEMA": name}


def restore_snapshot() -> None:
    """Bad-source cases re-take DATE's snapshot on purpose; put the good one back (from app.*)."""
    proc = jobcast("extract", "--date", DATE, "--refresh")
    assert proc.returncode == 0, proc.stderr[-2000:]


# Bad source data: the run fails at extract or at the raw gate, before anything downstream.
BAD_SOURCES = [
    ("duplicate job_id", "select * from app.job_postings union all (select * from app.job_postings order by job_id limit 1)",
     None, "duplicate job_id"),
    ("column missing", "select job_id, company_id, description, prefecture, employment_type, category, salary_min, "
                       "salary_max, posted_at, closed_at from app.job_postings", None, "title"),
    ("column retyped", "select job_id, company_id, title, description, prefecture, employment_type, category, "
                       "salary_min::text as salary_min, salary_max, posted_at, closed_at from app.job_postings", None,
     "salary_min: type text"),
    ("unknown event type", None, "select event_id, job_id, session_id, case when event_id % 97 = 0 then 'click' "
                                 "else event_type end as event_type, occurred_at from app.events", "event_type"),
    ("unknown employment type", "select job_id, company_id, title, description, prefecture, case when job_id % 7 = 0 "
                                "then 'gig' else employment_type end as employment_type, category, salary_min, salary_max, "
                                "posted_at, closed_at from app.job_postings", None, "employment_type"),
    ("null prefecture", "select job_id, company_id, title, description, case when job_id % 9 = 0 then null else prefecture "
                        "end as prefecture, employment_type, category, salary_min, salary_max, posted_at, closed_at "
                        "from app.job_postings", None, "prefecture"),
    ("null job_id", "select case when job_id % 11 = 0 then null else job_id end as job_id, company_id, title, description, "
                    "prefecture, employment_type, category, salary_min, salary_max, posted_at, closed_at from app.job_postings",
     None, "null job_id"),
    ("source collapsed", "select * from app.job_postings where job_id % 10 = 0", None, "expect_table_row_count_to_be_between"),
    ("no open postings", "select * from app.job_postings where false", None, "no open postings"),
    ("events table missing", None, "__drop__", "events\" does not exist"),
]


def _bad_source(label, postings, events, needle):
    def fn(c):
        schema = "bad_" + "".join(ch if ch.isalnum() else "_" for ch in label)
        env = source_schema(schema, postings or "select * from app.job_postings",
                            "select * from app.events" if events in (None, "__drop__") else events)
        if events == "__drop__":
            sql(f"drop view {schema}.events")
        try:
            proc = jobcast("run", "--date", DATE, "--refresh", env=env)
            return expect_error(proc, needle)
        finally:
            sql(f"drop schema if exists {schema} cascade")
            restore_snapshot()
    return fn


for _label, _p, _e, _needle in BAD_SOURCES:
    case(f"source: {_label}", "`jobcast run --refresh` on a source view with this fault",
         f"exit 2 naming {_needle!r}; nothing published", refreshes={f"dt={DATE}"})(_bad_source(_label, _p, _e, _needle))


@case("events dated in the future", "events stamped a year from now added to the source; `jobcast run --refresh`",
      "ignored: a snapshot holds events up to the end of D only; the run publishes", publishes=set(TASKS),
      refreshes={f"dt={DATE}"})
def _future_events(c):
    env = source_schema("future", events="select * from app.events union all select event_id + 1000000000, job_id, "
                                         "session_id, 'apply', now() + interval '1 year' from app.events where event_id % 50 = 0")
    try:
        proc = jobcast("run", "--date", DATE, "--refresh", env=env)
        import pyarrow.parquet as pq

        events = pq.read_table(DATA / "raw" / "events" / f"dt={DATE}", columns=["event_id"]).column(0).to_pylist()
        leaked = sum(1 for e in events if e > 1_000_000_000)
        return f"rc={proc.returncode}; future events in the snapshot: {leaked}", proc.returncode == 0 and leaked == 0
    finally:
        sql("drop schema if exists future cascade")
        restore_snapshot()


def _tamper(rel: str, how: str, argv: list[str], needle: str, rc: int = 2, publishes=()):
    """Damage a file (truncate it, overwrite its middle with zeros), run a step, restore the file."""
    def fn(c):
        target = next(iter(sorted(DATA.parent.glob(rel))), None) if "*" in rel else DATA.parent / rel
        if target is None or not target.exists():
            return f"no file {rel}", False
        backup = target.read_bytes()
        try:
            if how == "truncate":
                target.write_bytes(backup[: len(backup) // 3])
            elif how == "zeros":
                mid = len(backup) // 2
                target.write_bytes(backup[:mid] + b"\0" * min(4096, len(backup) - mid) + backup[mid + 4096:])
            elif how == "garbage":
                target.write_bytes(b"not parquet at all")
            return expect_error(jobcast(*argv), needle, rc=rc)
        finally:
            target.write_bytes(backup)
    return fn


case("corrupt features part file", "features Parquet part overwritten with garbage; `jobcast score`",
     "exit 2 naming the file", )(_tamper(f"data/features/dt={DATE}/part-*.parquet", "garbage",
                                         ["score", "--task", "salary", "--date", DATE, "--full"], "part-"))
case("corrupt predictions part file", "predictions part overwritten after validation; `jobcast publish`",
     "exit 2: changed after validation; live unchanged")(_tamper(f"data/predictions/salary/dt={DATE}/part-*.parquet", "garbage",
                                                                   ["publish", "--task", "salary", "--date", DATE], "changed after validation"))
case("truncated model file", "the champion's booster file cut to a third; `jobcast score`",
     "exit 2: ModelError naming the file")(_tamper("models/salary/2*/model.txt", "truncate",
                                                   ["score", "--task", "salary", "--date", DATE, "--full"], "model.txt"))
case("corrupt raw snapshot", "raw postings part overwritten with garbage; `jobcast features`",
     "exit 2 naming the file")(_tamper(f"data/raw/job_postings/dt={DATE}/part-00000.parquet", "garbage",
                                       ["features", "--date", DATE], "part-00000"))


@case("champion points to a missing version", "champion.json names a version that is not there; `jobcast score`",
      "exit 2: ModelError naming the version")
def _missing_champion(c):
    pointer = HOME / "models" / "salary" / "champion.json"
    backup = pointer.read_text()
    try:
        pointer.write_text(json.dumps({**json.loads(backup), "version": "20990101-deadbeef"}))
        return expect_error(jobcast("score", "--task", "salary", "--date", DATE, "--full"), "20990101-deadbeef")
    finally:
        pointer.write_text(backup)


@case("pinned model version missing", "`jobcast score --model-version nope`", "exit 2 naming the version")
def _pinned(c):
    return expect_error(jobcast("score", "--task", "salary", "--date", DATE, "--model-version", "nope"), "nope")


@case("verdict missing", "validation verdict deleted; `jobcast publish`", "exit 2: not validated")
def _no_verdict(c):
    path = HOME / "reports" / "validations" / "salary" / f"dt={DATE}.json"
    backup = path.read_bytes()
    path.unlink()
    try:
        return expect_error(jobcast("publish", "--task", "salary", "--date", DATE), "not validated")
    finally:
        path.write_bytes(backup)


@case("drift verdict missing", "drift verdict deleted (drift gate killed); `jobcast publish`",
      "exit 2: drift gate did not complete")
def _no_drift(c):
    path = HOME / "reports" / "validations" / "salary_drift" / f"dt={DATE}.json"
    if not path.exists():
        return "no drift verdict to delete (first batch)", False
    backup = path.read_bytes()
    path.unlink()
    try:
        return expect_error(jobcast("publish", "--task", "salary", "--date", DATE), "drift gate did not complete")
    finally:
        path.write_bytes(backup)


@case("bad date", "`jobcast extract --date 2026-13-45`", "exit 2: expected YYYY-MM-DD")
def _bad_date(c):
    return expect_error(jobcast("extract", "--date", "2026-13-45"), "YYYY-MM-DD")


@case("bad params value", "params override with publish.keep_batches: many", "exit 2 naming the key")
def _bad_params(c):
    f = HOME / "bad-params.yaml"
    f.write_text("publish:\n  keep_batches: many\n")
    return expect_error(jobcast("cleanup", env={"JOBCAST_PARAMS_OVERRIDE": str(f)}), "keep_batches", rc=2)


@case("bad spark conf", "JOBCAST_SPARK_CONF=oops", "exit 2 naming the item")
def _bad_spark_conf(c):
    return expect_error(jobcast("features", "--date", DATE, env={"JOBCAST_SPARK_CONF": "oops"}), "JOBCAST_SPARK_CONF")


@case("unknown prediction task", "`jobcast score --task salary_v2`", "exit 2 listing the tasks")
def _unknown_task(c):
    return expect_error(jobcast("score", "--task", "salary_v2", "--date", DATE), "invalid choice")


@case("bad database port", "JOBCAST_PG_PORT=abc", "exit 2 naming the variable")
def _bad_port(c):
    return expect_error(jobcast("batches", env={"JOBCAST_PG_PORT": "abc"}), "JOBCAST_PG_PORT")


@case("publish with no predictions", "`jobcast publish` for a date never scored", "exit 2: run score first")
def _no_preds(c):
    return expect_error(jobcast("publish", "--task", "cvr", "--date", "2026-09-03"), "jobcast score --task cvr")


@case("source: blank titles and reversed salaries", "a source view with 1 in 13 titles blank and 1 in 17 salary ranges "
      "reversed; `jobcast run --refresh`", "handled as documented: dropped / not a label, counted; the run publishes",
      publishes=set(TASKS), refreshes={f"dt={DATE}"})
def _handled_rows(c):
    env = source_schema("messy", "select job_id, company_id, case when job_id % 13 = 0 then ' ' else title end as title, "
                                 "description, prefecture, employment_type, category, case when job_id % 17 = 0 then "
                                 "salary_max else salary_min end as salary_min, case when job_id % 17 = 0 then salary_min "
                                 "else salary_max end as salary_max, posted_at, closed_at from app.job_postings")
    try:
        proc = jobcast("run", "--date", DATE, "--refresh", env=env)
        feats = json.loads((DATA / "features" / f"dt={DATE}" / "_manifest.json").read_text())
        return (f"rc={proc.returncode}; dropped_null_title={feats.get('dropped_null_title')}, "
                f"salary_implausible={feats.get('salary_implausible')}",
                proc.returncode == 0 and feats.get("dropped_null_title", 0) > 0 and feats.get("salary_implausible", 0) > 0)
    finally:
        sql("drop schema if exists messy cascade")
        restore_snapshot()


@case("missing features partition", "`jobcast score` for a date with no features", "exit 2: run features first")
def _no_features(c):
    return expect_error(jobcast("score", "--task", "salary", "--date", "2026-09-02"), "features")


# Killed processes: SIGKILL to the whole process group (the JVM included) in the middle of the step.
def _kill_step(argv: list[str], marker: Callable[[], bool], out_dir: Path):
    def fn(c):
        before = tree_hash(out_dir)
        proc = start(*argv)
        deadline = time.monotonic() + 300
        while not marker():
            if proc.poll() is not None:
                return f"step finished before the kill point (rc={proc.returncode})", False
            if time.monotonic() > deadline:
                kill_group(proc)
                return "never reached the kill point", False
            time.sleep(0.02)
        kill_group(proc)
        intact = tree_hash(out_dir) == before
        again = jobcast(*argv)
        return (f"killed; output {'intact' if intact else 'CHANGED'}; rerun rc={again.returncode}",
                intact and again.returncode == 0)
    return fn


def _tmp_sibling(path: Path) -> Callable[[], bool]:
    return lambda: any(p.name.startswith(f".tmp-{path.name}") for p in path.parent.glob(".tmp-*"))


def _backend_active(app: str) -> Callable[[], bool]:
    return lambda: bool(sql("select 1 from pg_stat_activity where application_name = %s and state = 'active'", (app,)))


_slow = ("with pause as materialized (select pg_sleep(2)) select p.* from app.job_postings p, pause")


@case("SIGKILL during extract", "`jobcast extract --refresh` killed while its query runs (slow source view)",
      "snapshot unchanged; rerun succeeds", refreshes={f"dt={DATE}"})
def _kill_extract(c):
    env = source_schema("slow", _slow)
    try:
        before = tree_hash(DATA / "raw" / "job_postings" / f"dt={DATE}")
        proc = start("extract", "--date", DATE, "--refresh", env=env)
        deadline = time.monotonic() + 120
        while not _backend_active("jobcast-extract")() and time.monotonic() < deadline:
            time.sleep(0.02)
        kill_group(proc)
        intact = tree_hash(DATA / "raw" / "job_postings" / f"dt={DATE}") == before
        again = jobcast("extract", "--date", DATE, "--refresh")
        return f"killed; snapshot {'intact' if intact else 'CHANGED'}; rerun rc={again.returncode}", intact and again.returncode == 0
    finally:
        sql("drop schema if exists slow cascade")


case("SIGKILL during features", "`jobcast features --force` killed while Spark writes", "features unchanged; rerun succeeds")(
    _kill_step(["features", "--date", DATE, "--force"], _tmp_sibling(DATA / "features" / f"dt={DATE}"), DATA / "features" / f"dt={DATE}"))
case("SIGKILL during score", "`jobcast score --full` killed while Spark writes", "predictions unchanged; rerun succeeds")(
    _kill_step(["score", "--task", "cvr", "--date", DATE, "--full"], _tmp_sibling(DATA / "predictions" / "cvr" / f"dt={DATE}"),
               DATA / "predictions" / "cvr" / f"dt={DATE}"))


@case("SIGKILL during validate", "`jobcast validate` killed while GX runs", "publish refuses or publishes the validated "
      "batch only; rerun succeeds", publishes={"category"})
def _kill_validate(c):
    proc = start("validate", "--task", "category", "--date", DATE)
    time.sleep(6)  # GX is loading and running the suite
    kill_group(proc)
    publish = jobcast("publish", "--task", "category", "--date", DATE)
    again = jobcast("validate", "--task", "category", "--date", DATE)
    publish2 = jobcast("publish", "--task", "category", "--date", DATE)
    return (f"killed; publish after kill rc={publish.returncode}; revalidate rc={again.returncode}; "
            f"publish rc={publish2.returncode}", again.returncode == 0 and publish2.returncode == 0)


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from jobcast.config import Settings
    from jobcast.db.conn import connect
    from jobcast.publish.store import BatchInfo, publish
    from jobs.validate import read_verdict
    settings = Settings.load()
    task, date, stall_at, pause, phase_file = sys.argv[1:6]
    preds = settings.data_dir / "predictions" / task / f"dt={date}"
    verdict = read_verdict(settings, task, date)
    def on_phase(name, batch_id):
        Path(phase_file).write_text(f"{name} {batch_id}")
        if name == stall_at:
            time.sleep(float(pause))
    publish(lambda: connect(settings, application_name="jobcast-publish"), preds,
            BatchInfo(task, date, "fault-bench", verdict["content_version"], "fault-bench", True, None),
            keep=2, on_phase=on_phase)
""")


def _publish_phase_kill(phase: str):
    def fn(c):
        flag = HOME / f"phase-{phase}"
        flag.unlink(missing_ok=True)
        before = state()["live"]["salary"]
        proc = start("-c", WORKER, "salary", DATE, phase, "600", str(flag), python=True)
        deadline = time.monotonic() + 120
        while not (flag.exists() and flag.read_text().startswith(phase)):
            if proc.poll() is not None or time.monotonic() > deadline:
                kill_group(proc)
                return f"worker never reached {phase}: {proc.stdout.read()[-300:] if proc.stdout else ''}", False
            time.sleep(0.02)
        kill_group(proc)
        time.sleep(0.3)
        unchanged = state()["live"]["salary"]["batch"] == before["batch"]
        again = jobcast("publish", "--task", "salary", "--date", DATE)
        return (f"killed at {phase}; live {'unchanged' if unchanged else 'CHANGED'}; republish rc={again.returncode}",
                unchanged and again.returncode == 0)
    return fn


for _phase in ("copy", "index", "attach", "swap"):
    case(f"SIGKILL during publish {_phase}", f"publisher killed in its {_phase} phase, then `jobcast publish`",
         "old batch live until the republish, which succeeds", publishes={"salary"})(_publish_phase_kill(_phase))


@case("PostgreSQL restart during publish", "server stopped (fast) and started while a publisher is in its copy phase",
      "publisher fails as transient (exit!=0); live unchanged; republish succeeds", publishes={"salary"})
def _restart_publish(c):
    flag = HOME / "phase-restart"
    flag.unlink(missing_ok=True)
    before = state()["live"]["salary"]["batch"]
    proc = start("-c", WORKER, "salary", DATE, "copy", "4", str(flag), python=True)
    while not (flag.exists() and flag.read_text().startswith("copy")):
        time.sleep(0.02)
    jobcast("db", "stop")
    jobcast("db", "start")
    out = proc.communicate(timeout=120)[0]
    unchanged = state()["live"]["salary"]["batch"] == before
    again = jobcast("publish", "--task", "salary", "--date", DATE)
    transient = "OperationalError" in out or "TransientError" in out or "InterfaceError" in out
    return (f"publisher rc={proc.returncode} ({'transient' if transient else last_line(out)}); live "
            f"{'unchanged' if unchanged else 'CHANGED'}; republish rc={again.returncode}",
            proc.returncode != 0 and unchanged and again.returncode == 0)


@case("PostgreSQL restart during extract", "server restarted while `jobcast --retries 3 extract --refresh` reads a slow source",
      "retried after the restart; exit 0", refreshes={f"dt={DATE}"})
def _restart_extract(c):
    env = source_schema("slow", _slow)
    try:
        proc = start("--retries", "3", "--retry-delay", "2", "extract", "--date", DATE, "--refresh", env=env)
        deadline = time.monotonic() + 120
        while not _backend_active("jobcast-extract")() and time.monotonic() < deadline:
            time.sleep(0.02)
        jobcast("db", "stop")
        jobcast("db", "start")
        out = proc.communicate(timeout=300)[0]
        return f"rc={proc.returncode}; {'retried' if 'retry 1 of 3' in out else 'no retry'}", proc.returncode == 0 and "retry 1 of 3" in out
    finally:
        sql("drop schema if exists slow cascade")


def _full_disk(rel: str, argv: list[str]):
    def fn(c):
        target = DATA / rel
        used = sum(-(-f.stat().st_size // 4096) * 4096 for f in target.rglob("*") if f.is_file())  # tmpfs: whole pages
        before = tree_hash(target)
        keep = HOME / f"disk-backup-{target.name}"
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(target, keep)
        size_kb = used // 1024 + 16  # what is there, and 16 kB to spare: the new output does not fit
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(target)], check=True)
        try:
            shutil.copytree(keep, target, dirs_exist_ok=True)
            proc = jobcast(*argv)
            intact = tree_hash(target) == before
        finally:
            subprocess.run(["umount", "-l", str(target)], check=True)
        shutil.rmtree(keep, ignore_errors=True)
        again = jobcast(*argv)
        out = proc.stdout + proc.stderr
        nospace = "No space left" in out or "ENOSPC" in out or "not enough space" in out.lower()
        return (f"rc={proc.returncode}{' (no space)' if nospace else ''}; output {'intact' if intact else 'CHANGED'}; "
                f"after freeing: rc={again.returncode}", proc.returncode != 0 and intact and again.returncode == 0)
    return fn


case("full disk writing features", "a tmpfs with 16 kB to spare over data/features; `jobcast features --force`",
     "fails; old features intact; succeeds once there is room", root=True)(
    _full_disk("features", ["features", "--date", DATE, "--force"]))
case("full disk writing predictions", "a tmpfs with 16 kB to spare over data/predictions/cvr; `jobcast score --full`",
     "fails; old predictions intact; succeeds once there is room", root=True)(
    _full_disk("predictions/cvr", ["score", "--task", "cvr", "--date", DATE, "--full"]))


@case("two publishes at once (CLI)", "two `jobcast publish --task salary` started together",
      "one publishes; the other publishes after it or fails as busy (exit 75)", publishes={"salary"})
def _two_publishes(c):
    a, b = start("publish", "--task", "salary", "--date", DATE), start("publish", "--task", "salary", "--date", DATE)
    for p in (a, b):
        p.communicate(timeout=300)
    rcs = sorted([a.returncode, b.returncode])
    return f"exit codes {rcs}", rcs in ([0, 0], [0, 75])


@case("two scores at once (CLI)", "two `jobcast score --full --task cvr` started together",
      "both finish; the partition is one whole run's output", publishes=set())
def _two_scores(c):
    a, b = (start("score", "--task", "cvr", "--date", DATE, "--full") for _ in range(2))
    for p in (a, b):
        p.communicate(timeout=600)
    check_ = jobcast("validate", "--task", "cvr", "--date", DATE)
    return f"exit codes {sorted([a.returncode, b.returncode])}; revalidate rc={check_.returncode}", \
        a.returncode == 0 and b.returncode == 0 and check_.returncode == 0


@case("two Airflow runs at once", "`airflow dags test jobcast_daily` of the same date (salary only) in two Airflow "
      "deployments (own metadata) started together; retries 5 s apart", "each run ends published or failed closed; "
      "the live batch is whole and validated", publishes={"salary"})
def _two_airflow(c):
    from jobcast.airflow import airflow_env

    airflow = str(Path(sys.executable).parent / "airflow")
    procs = []
    for i in (1, 2):
        home = HOME / f"airflow-{i}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        env = {**airflow_env(ROOT, port=free_port(), metadata_url=f"sqlite:///{home / 'airflow.db'}?timeout=30"),
               "AIRFLOW_HOME": str(home), "JOBCAST_RETRY_DELAY_S": "5"}
        ready = jobcast("airflow", "pools", "list", env=env)  # migrates the metadata, creates the pool
        if ready.returncode != 0:
            return f"airflow set-up failed: {last_line(ready.stderr)}", False
        # Output to a file, not a pipe: read one run at a time, the other's full pipe would block its logging
        # while it may hold the GX lock the first one waits for (a deadlock of this harness, not of jobcast).
        with (home / "dags-test.log").open("w") as log:  # the child keeps its own copy of the descriptor
            procs.append((subprocess.Popen([airflow, "dags", "test", "jobcast_daily", DATE, "--conf",
                                            json.dumps({"tasks": ["salary"]})], env={**ENV, **env}, stdout=log,
                                           stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True), Path(log.name)))
    for p, _ in procs:
        p.wait(timeout=1500)
    outs = [path.read_text(errors="replace") for _, path in procs]
    ends = ["success" if "state=success" in o.split("DagRun Finished")[-1][:600] else "failed" for o in outs]
    retried = sum(o.count("new_state=up_for_retry") for o in outs)
    return f"runs {ends}; {retried} task retries", "success" in ends


def _idle_reader():
    import psycopg2

    reader = psycopg2.connect(URL, application_name="idle-reader")
    with reader.cursor() as cur:
        cur.execute("select count(*) from predictions.job_salary")
    return reader


@case("idle-in-transaction reader during publish", "a session idle in a transaction over job_salary; `jobcast publish`",
      "returns in < 5 s with a retention warning; view whole", publishes={"salary"})
def _idle_publish(c):
    reader = _idle_reader()
    try:
        proc = jobcast("publish", "--task", "salary", "--date", DATE)
        again = jobcast("publish", "--task", "salary", "--date", DATE)
    finally:
        reader.close()
    took = [step_seconds(p.stdout) for p in (proc, again)]
    warned = "retention deferred" in proc.stdout + proc.stderr
    return (f"rc={proc.returncode} in {took[0]} s{' with a retention warning' if warned else ''}; republish "
            f"rc={again.returncode} in {took[1]} s", proc.returncode == 0 and again.returncode == 0
            and all(t is not None and t < 5 for t in took))


@case("idle-in-transaction reader during retention", "reader idle while `jobcast cleanup` drops old batches; reader leaves; cleanup again",
      "first cleanup defers within seconds; second drops; nothing lost")
def _idle_retention(c):
    reader = _idle_reader()
    try:
        t0 = time.perf_counter()
        first = jobcast("cleanup", "--tasks", "salary")
        took = time.perf_counter() - t0
    finally:
        reader.close()
    second = jobcast("cleanup", "--tasks", "salary")
    pending = sql("select count(*) from pg_inherits where inhdetachpending")[0][0]
    return (f"first rc={first.returncode} in {took:.1f} s; second rc={second.returncode}; pending detaches {pending}",
            first.returncode == 0 and second.returncode == 0 and pending == 0)


# ---------------------------------------------------------------------------------------------- driver
def setup() -> None:
    global URL
    if (HOME / "ready").exists():
        jobcast("db", "start")
        URL = db_url()
        return
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    ENV["JOBCAST_PG_PORT"] = str(free_port())
    (HOME / "port").write_text(ENV["JOBCAST_PG_PORT"])
    for argv in (["db", "start"], ["db", "migrate"],
                 ["generate", "--postings", "3000", "--days", "30", "--seed", "11", "--start-date", "2026-09-01"],
                 ["run", "--date", DATE, "--train"], ["run", "--date", DATE]):  # two batches per task: retention has work
        proc = jobcast(*argv)
        if proc.returncode != 0:
            sys.exit(f"set-up `jobcast {' '.join(argv)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    URL = db_url()
    (HOME / "ready").write_text("ok")


URL = ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="rebuild the set-up (board, models, first batches)")
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(c.name)
        return 0
    if args.fresh:
        shutil.rmtree(HOME, ignore_errors=True)
    if (HOME / "port").exists():
        ENV["JOBCAST_PG_PORT"] = (HOME / "port").read_text().strip()
    t0 = time.perf_counter()
    setup()
    print(f"set-up: {time.perf_counter() - t0:.0f} s (board, models, two batches per task)", flush=True)
    rows, totals = [], {"lost": 0, "mixed": 0, "wrong": 0}
    is_root = os.geteuid() == 0
    for c in CASES:
        if args.only and not any(s in c.name for s in args.only):
            continue
        if c.root and not is_root:
            rows.append((c.name, c.done, c.expected, "skipped: needs root (tmpfs)", "-"))
            continue
        before = state()
        t1 = time.perf_counter()
        try:
            observed, as_expected = c.fn(c)
        except Exception as exc:  # noqa: BLE001 - a harness failure is a row, not the end of the bench
            observed, as_expected = f"harness error: {type(exc).__name__}: {exc}", False
        jobcast("cleanup")  # what an operator (or the next publish) does after a crash
        after = state()
        bad = check(before, after, c.publishes, c.refreshes)
        for k in totals:
            totals[k] += len(bad[k])
        consistent = not any(bad.values())
        verdict = ("yes" if consistent else f"NO {bad}") + ("" if as_expected else "; outcome NOT as expected")
        rows.append((c.name, c.done, c.expected, f"{observed} ({time.perf_counter() - t1:.0f} s)", verdict))
        print(f"{c.name}: {observed} -> {verdict}", flush=True)
    print()
    print("| # | fault | what was done | expected | observed | consistent |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | " + " | ".join(s.replace("|", "/") for s in r) + " |")
    ok = sum(1 for r in rows if r[4] == "yes")
    print(f"\n{len(rows)} cases: {ok} consistent and as expected; lost {totals['lost']}, mixed {totals['mixed']}, "
          f"wrongly published {totals['wrong']}")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
