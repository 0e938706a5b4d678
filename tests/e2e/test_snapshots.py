"""Point-in-time snapshots: a date's raw snapshot, once taken, is the board as it was; rebuilding the window
never re-reads that date from today's (edited) tables. Refreshing one is explicit and recorded."""

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from jobcast.features.text import term_ids
from jobcast.storage import partition

from conftest import SMALL_DATE, make_ctx
from jobs import extract, train, window

pytestmark = pytest.mark.e2e

DAY_BEFORE = (dt.date.fromisoformat(SMALL_DATE) - dt.timedelta(days=1)).isoformat()


def features_of(settings, ds):
    return pq.read_table(partition(settings.data_dir, "features", date=ds)).to_pandas().set_index("job_id").sort_index()


def manifest(settings, layer, ds, table="job_postings"):
    path = partition(settings.data_dir, "raw", table, date=ds) if layer == "raw" else partition(settings.data_dir, layer, date=ds)
    return json.loads((path / "_manifest.json").read_text())


def test_editing_a_category_after_a_date_does_not_change_that_dates_features_when_the_window_is_rebuilt(
        settings, generated, conn):
    ctx = make_ctx(settings)
    window.run(ctx, days=2)
    before = features_of(settings, DAY_BEFORE)
    job = int(before.index[before["category_filed"].notna()][0])
    old = before.loc[job, "category_filed"]
    # On a later day the employer refiles the posting; the board's table now says so, with the time of the edit.
    with conn.cursor() as cur:
        cur.execute("alter table app.job_postings add column updated_at timestamptz")
        cur.execute("update app.job_postings set category = 'edited later', updated_at = now() where job_id = %s", (job,))

    rebuilt = window.run(ctx, days=2, force=True)  # features rebuilt for both days, from the kept snapshots
    assert rebuilt.metrics["built"] == 2
    after = features_of(settings, DAY_BEFORE)
    assert after.loc[job, "category_filed"] == old
    assert after.equals(before)  # the whole day is as it was, not just that posting
    again = extract.run(make_ctx(settings, DAY_BEFORE))  # a backfill's extract reuses the snapshot too
    assert again.metrics["reused"] is True

    # The first snapshots were taken long after their days (a first window on a board): recorded as such.
    m = manifest(settings, "raw", DAY_BEFORE)
    assert m["mode"] == "reconstructed" and m["lag_hours"] > 36 and "refreshed" not in m
    assert manifest(settings, "features", DAY_BEFORE)["snapshot_mode"] == "reconstructed"
    assert rebuilt.metrics["snapshots"] == {"reconstructed": 2}

    # Re-taking a snapshot is explicit, and recorded with what it replaced.
    old_version = extract.run(make_ctx(settings, DAY_BEFORE)).ids["job_postings_version"]
    window.run(ctx, days=2, refresh=True)
    refreshed = features_of(settings, DAY_BEFORE)
    assert refreshed.loc[job, "category_filed"] == "edited later"
    m = manifest(settings, "raw", DAY_BEFORE)
    assert len(m["refreshed"]) == 1 and m["refreshed"][0]["replaced_version"].startswith(old_version)
    assert m["refreshed"][0]["run_id"] == ctx.run_id
    assert m["edited_after_day_end"] == 1  # updated_at says which postings changed after the day


def test_the_model_records_which_window_days_were_reconstructed(settings, champions):
    from jobcast.models import registry

    ctx = make_ctx(settings)
    out = train.run(ctx, task="cvr")
    meta = registry.read_metadata(registry.version_dir(settings, "cvr", out.ids["model_version"]))
    snaps = meta["snapshots"]
    assert sum(snaps["modes"].values()) == meta["window_days"]
    assert snaps["not_point_in_time"] and snaps["not_point_in_time"][-1] == SMALL_DATE


def test_the_windows_one_job_build_gives_each_day_what_a_one_day_build_gives(settings, generated, caplog):
    """`jobcast window` builds the missing days together (one Spark job, each posting's text featurised once,
    each day's events read once from the files the snapshots share); every day's partition holds the same
    rows and values, and the same manifest, as `jobcast features` of that day alone (which counts the events
    of its own snapshot). So does a window whose snapshots no longer share files (one re-taken)."""
    import logging

    from jobs import features

    ctx = make_ctx(settings)
    with caplog.at_level(logging.INFO, logger="jobs.features"):
        out = window.run(ctx, days=3)
    assert out.metrics["built"] == 3
    assert "the 3 days' events snapshots share their files; 30 day files read once" in caplog.text
    days = [(dt.date.fromisoformat(SMALL_DATE) - dt.timedelta(days=i)).isoformat() for i in range(3)]
    together = {ds: (features_of(settings, ds), manifest(settings, "features", ds)) for ds in days}
    for ds in days:
        alone = features.run(make_ctx(settings, ds), force=True)
        assert alone.metrics.get("reused") is None
        frame, m = features_of(settings, ds), manifest(settings, "features", ds)
        assert len(frame) > 100 and list(frame.columns) == list(together[ds][0].columns)
        assert frame.equals(together[ds][0]), ds
        drop = ("content_version",)  # the files' split differs, not their rows
        assert {k: v for k, v in m.items() if k not in drop} == {k: v for k, v in together[ds][1].items() if k not in drop}

    extract.run(make_ctx(settings, days[1]), refresh=True)  # the same rows, in files of its own
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jobs.features"):
        assert window.run(ctx, days=3, force=True).metrics["built"] == 3
    assert "share their files" not in caplog.text
    for ds in days:
        assert features_of(settings, ds).equals(together[ds][0]), ds


def test_a_days_features_reuse_the_previous_days_text_terms_only_for_unchanged_texts(settings, generated, caplog):
    """The daily run featurises only new and edited postings' text; every other posting takes its terms from
    yesterday's features. The result is the same as featurising every posting (an edited title included)."""
    import logging
    import shutil

    import pyarrow as pa

    from jobs import features

    ctx = make_ctx(settings)
    window.run(ctx, days=2)
    raw = partition(settings.data_dir, "raw", "job_postings", date=SMALL_DATE)
    table = pq.read_table(raw)
    edited = table.column("job_id")[0].as_py()  # an employer rewrites a title that was open yesterday too
    assert edited in set(features_of(settings, DAY_BEFORE).index)
    titles = [("Remote data engineer (rewritten)" if j == edited else t)
              for j, t in zip(table.column("job_id").to_pylist(), table.column("title").to_pylist())]
    f = next(raw.glob("*.parquet"))
    pq.write_table(table.set_column(table.schema.get_field_index("title"), "title", pa.array(titles, pa.string())), f)

    with caplog.at_level(logging.INFO, logger="jobs.features"):
        features.run(ctx, force=True)
    assert any("reused from its features" in r.getMessage() and DAY_BEFORE in r.getMessage() for r in caplog.records)
    reused = features_of(settings, SMALL_DATE)
    ids = (lambda packed: set(term_ids([packed])[0].tolist()))
    assert not ids(reused.loc[edited, "text_terms"]) <= ids(features_of(settings, DAY_BEFORE).loc[edited, "text_terms"])

    shutil.rmtree(partition(settings.data_dir, "features", date=DAY_BEFORE))  # nothing to reuse: every text featurised
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jobs.features"):
        features.run(ctx, force=True)
    assert not any("reused from its features" in r.getMessage() for r in caplog.records)
    assert features_of(settings, SMALL_DATE).equals(reused)


def test_a_days_events_snapshot_reads_its_newest_days_and_links_the_older_files_of_the_day_before(settings, generated, conn):
    """Events are facts: a day's snapshot reads from the source only its own day and the day before it
    (extract.events_settle_days: events logged late), and hard-links the older days' files of the day before's
    snapshot (stored once), with the same rows a whole-window read gives. The raw gate then checks only the
    files the day before's passing verdict does not vouch for. An event that reaches the source later than
    that is seen only by --refresh."""
    import os

    from jobs import validate

    day = dt.date.fromisoformat(SMALL_DATE)
    first = extract.run(make_ctx(settings, DAY_BEFORE))
    prev_dir = partition(settings.data_dir, "raw", "events", date=DAY_BEFORE)
    prev = manifest(settings, "raw", DAY_BEFORE, "events")
    assert prev["linked_from"] is None and len(prev["days"]) == 29 and sum(prev["days"].values()) == first.metrics["events_rows"]
    assert sorted(p.name for p in prev_dir.glob("*.parquet")) == sorted(extract.event_file(d) for d in prev["days"])
    # Two events reach the source after the day before's snapshot: one of the day before, one of the day before that.
    late = {}
    with conn.cursor() as cur:
        for back in (1, 2):
            cur.execute("insert into app.events select max(event_id) + 1, 1, 1, 'view', %s from app.events returning event_id",
                        (dt.datetime.combine(day - dt.timedelta(days=back), dt.time(12), dt.timezone.utc),))
            late[back] = cur.fetchone()[0]

    linked = extract.run(make_ctx(settings))
    here = partition(settings.data_dir, "raw", "events", date=SMALL_DATE)
    m = manifest(settings, "raw", SMALL_DATE, "events")
    days = extract.event_days(day, 28)
    assert m["linked_from"] == DAY_BEFORE and list(m["days"]) == [d.isoformat() for d in days]
    for d in days[:-2]:
        assert os.stat(here / extract.event_file(d)).st_ino == os.stat(prev_dir / extract.event_file(d)).st_ino
        assert m["days"][d.isoformat()] == prev["days"][d.isoformat()]
    assert os.stat(here / extract.event_file(days[-2])).st_ino != os.stat(prev_dir / extract.event_file(days[-2])).st_ino
    rows = pq.read_table(here).to_pandas().sort_values("event_id", ignore_index=True)
    assert len(rows) == linked.metrics["events_rows"] == sum(m["days"].values())
    assert late[1] in set(rows["event_id"]) and late[2] not in set(rows["event_id"])  # settled after one day
    ends = {d: dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), dt.timezone(dt.timedelta(hours=9))) for d in days}
    for d in days:  # each file holds its own day's events, in the board's timezone
        t = pq.read_table(here / extract.event_file(d)).column("occurred_at").to_pandas()
        assert t.empty or ((t >= ends[d] - dt.timedelta(days=1)) & (t < ends[d])).all(), d

    # The raw gate reads the files the day before's verdict does not vouch for: the day, and the day before
    # (re-read with its late event: other bytes). The linked files were checked by the day before's gate.
    validate.run(make_ctx(settings, DAY_BEFORE), layer="raw")
    validate.run(make_ctx(settings), layer="raw")
    verdict = validate.read_verdict(settings, "raw_events", SMALL_DATE)
    assert verdict["success"] and verdict["inherited_from"] == DAY_BEFORE
    assert verdict["checked_files"] == [extract.event_file(d) for d in days[-2:]]
    assert verdict["rows"] == m["days"][SMALL_DATE] + m["days"][days[-2].isoformat()]
    # Without the day before's verdict, every file is checked.
    validate.verdict_path(settings, "raw_events", DAY_BEFORE).unlink()
    validate.run(make_ctx(settings), layer="raw")
    verdict = validate.read_verdict(settings, "raw_events", SMALL_DATE)
    assert verdict["inherited_from"] is None and verdict["rows"] == len(rows) and len(verdict["checked_files"]) == 29

    # --refresh reads the whole window from the source: the same rows, plus the event that came too late.
    extract.run(make_ctx(settings), refresh=True)
    assert manifest(settings, "raw", SMALL_DATE, "events")["linked_from"] is None
    again = pq.read_table(here).to_pandas().sort_values("event_id", ignore_index=True)
    assert again[again["event_id"] != late[2]].reset_index(drop=True).equals(rows) and late[2] in set(again["event_id"])
    assert (prev_dir / extract.event_file(days[-2])).is_file()  # the day before's files untouched
    # The same rows give the same bytes, however the source's rows came in batches: a re-read day whose
    # events did not change is vouched for by the verdict that covered it.
    assert (here / extract.event_file(days[-4])).read_bytes() == (prev_dir / extract.event_file(days[-4])).read_bytes()
