"""Validation gates on raw data and features: a bad input fails the right gate, names the expectation,
and nothing reaches the public views."""

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobcast.errors import ValidationFailed
from jobcast.storage import partition, write_manifest

from conftest import SMALL_DATE, make_ctx, with_params
from jobs import extract, features, run, validate

pytestmark = pytest.mark.e2e


def live_batches(conn):
    with conn.cursor() as cur:
        cur.execute("select count(*), count(distinct batch_id), min(batch_id) from predictions.job_salary")
        return cur.fetchone()


def test_a_wrong_event_type_fails_the_raw_gate_and_publishes_nothing(settings, champions, conn):
    first = run.run(make_ctx(settings), tasks=("salary",), echo=lambda _: None)
    before = live_batches(conn)
    with conn.cursor() as cur:  # the app starts logging a new event type on that day
        cur.execute("update app.events set event_type = 'click' where event_id in (select event_id from app.events "
                    "where occurred_at >= '2026-09-29T15:00:00Z' and occurred_at < '2026-09-30T15:00:00Z' limit 5)")
    with pytest.raises(ValidationFailed, match=r"raw_events failed 1 of 5 expectations: expect_column_values_to_be_in_set") as err:
        run.run(make_ctx(settings), tasks=("salary",), refresh=True, echo=lambda _: None)  # re-take the day's snapshot
    assert "raw_events" in open(err.value.report_path, encoding="utf-8").read()
    assert live_batches(conn) == before and before[2] == first[-1].ids["batch_id"]
    verdict = json.loads((settings.reports_dir / "validations" / "raw_events" / f"dt={SMALL_DATE}.json").read_text())
    assert verdict["success"] is False and verdict["failed"][0]["unexpected_count"] == 5


def test_a_collapsing_source_fails_the_raw_gate(settings, generated):
    ctx = make_ctx(settings)
    extract.run(ctx)
    prev = partition(settings.data_dir, "raw", "job_postings", date=(ctx.logical_date - dt.timedelta(days=1)).isoformat())
    prev.mkdir(parents=True)
    write_manifest(prev, {"rows": 100_000})  # yesterday had far more open postings
    with pytest.raises(ValidationFailed, match="expect_table_row_count_to_be_between"):
        validate.run(ctx, layer="raw")


@pytest.mark.parametrize("engine", ["pandas", "spark"])
def test_tampered_features_fail_the_features_gate(settings, generated, engine):
    """The same suite through GX's pandas and Spark datasources (validate.spark_min_rows picks by size)."""
    settings = with_params(settings, **{"validate.spark_min_rows": 0 if engine == "spark" else 10**9})
    ctx = make_ctx(settings)
    extract.run(ctx)
    features.run(ctx)
    validate.run(ctx, layer="features")  # passes as produced
    f = next(partition(settings.data_dir, "features", date=SMALL_DATE).glob("*.parquet"))
    t = pq.read_table(f)
    pq.write_table(pa.concat_tables([t, t.slice(0, 3)]), f)  # duplicated postings
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_unique.*expect_table_row_count_to_equal"):
        validate.run(ctx, layer="features")
    # A 28-day window that holds fewer views than its 7-day part (a window that lost or leaked days).
    i = t.column_names.index("views_28d")
    pq.write_table(t.set_column(i, "views_28d", pc.subtract(t["views_7d"], pa.scalar(1, t["views_7d"].type))), f)
    with pytest.raises(ValidationFailed, match=r"expect_column_pair_values_a_to_be_greater_than_b\(column_A=views_28d, column_B=views_7d\)"):
        validate.run(ctx, layer="features")


def test_the_raw_gate_in_spark_names_the_bad_values_and_rows(settings, generated):
    settings = with_params(settings, **{"validate.spark_min_rows": 0})
    ctx = make_ctx(settings)
    extract.run(ctx)
    validate.run(ctx, layer="raw")  # passes as extracted
    snap = partition(settings.data_dir, "raw", "events", date=SMALL_DATE)
    f = snap / extract.event_file(SMALL_DATE)  # the day's own events (the older days' files may be links: never written in place)
    t = pq.read_table(f)
    kinds = t["event_type"].to_pylist()
    kinds[:4] = ["click"] * 4
    pq.write_table(t.set_column(t.schema.get_field_index("event_type"), "event_type", pa.array(kinds)), f.with_suffix(".tmp"))
    f.with_suffix(".tmp").replace(f)
    with pytest.raises(ValidationFailed, match=r"raw_events failed 1 of 5 expectations: expect_column_values_to_be_in_set"
                                               r".*unexpected=4 e.g. \['click'\]"):
        validate.run(ctx, layer="raw")
    verdict = json.loads((settings.reports_dir / "validations" / "raw_events" / f"dt={SMALL_DATE}.json").read_text())
    assert verdict["success"] is False and verdict["rows"] == pq.read_table(snap).num_rows  # no day before: every day checked
    # The same GX project switches engines (a board that grew past validate.spark_min_rows, or shrank).
    with pytest.raises(ValidationFailed, match=r"unexpected=4 e.g. \['click'\]"):
        validate.run(make_ctx(with_params(settings, **{"validate.spark_min_rows": 10**9})), layer="raw")


def test_a_constant_model_is_caught_by_the_drift_gate_against_the_live_batch(settings, champions, conn):
    ctx = make_ctx(settings)
    run.run(ctx, tasks=("salary",), echo=lambda _: None)
    before = live_batches(conn)
    preds = partition(settings.data_dir, "predictions", "salary", date=SMALL_DATE)
    f = next(preds.glob("*.parquet"))
    t = pq.read_table(f)
    # Plausible values (the predictions suite passes) but a broken model: the same salary for everyone.
    for name, value in (("salary_p10", 2_400_000.0), ("salary_p50", 3_000_000.0), ("salary_p90", 3_750_000.0)):
        t = t.set_column(t.schema.get_field_index(name), name, pa.array([value] * t.num_rows))
    pq.write_table(t, f)
    with pytest.raises(ValidationFailed, match="drift_salary failed .*expect_column_kl_divergence_to_be_less_than"):
        validate.run(ctx)
    from jobcast.errors import PublishError
    from jobs import publish

    with pytest.raises(PublishError, match="validation failed"):
        publish.run(ctx)
    assert live_batches(conn) == before


def test_a_normal_rerun_passes_the_drift_gate_and_one_whose_drift_gate_errors_is_not_publishable(settings, champions, conn):
    import dataclasses

    from jobcast.errors import DatabaseError, PublishError
    from jobs import publish

    ctx = make_ctx(settings)
    run.run(ctx, tasks=("salary",), echo=lambda _: None)
    out = run.run(ctx, tasks=("salary",), echo=lambda _: None)  # same model, same data: no drift
    assert out[-1].ids["status"] == "published"
    drift = json.loads((settings.reports_dir / "validations" / "salary_drift" / f"dt={SMALL_DATE}.json").read_text())
    assert drift["success"] is True and drift["run_id"] == ctx.run_id

    # Fail closed: the predictions gate passes, then the drift gate cannot read the live batch (the shared DB is
    # unreachable). The batch is not publishable until a validation run completes every gate.
    before = live_batches(conn)
    unreachable = dataclasses.replace(settings, database_url="postgresql://jobcast@127.0.0.1:9/jobcast")
    with pytest.raises(DatabaseError):
        validate.run(make_ctx(unreachable), task="salary")
    assert validate.read_verdict(settings, "salary", SMALL_DATE)["success"] is True  # its own gate passed
    with pytest.raises(PublishError, match=r"the drift gate did not complete in validation run test__"):
        publish.run(make_ctx(settings), task="salary")
    assert live_batches(conn) == before


def test_a_batch_is_publishable_only_after_the_features_gate_passed_on_the_features_it_was_scored_from(
        settings, champions, conn):
    from jobcast.errors import PublishError
    from jobs import publish, score

    ctx = make_ctx(settings)
    score.run(ctx, task="cvr", full=True)
    validate.run(ctx, task="cvr")  # predictions and drift gates pass
    with pytest.raises(PublishError, match="the features gate has not run"):
        publish.run(ctx, task="cvr")
    validate.run(ctx, layer="features")
    f = next(partition(settings.data_dir, "features", date=SMALL_DATE).glob("*.parquet"))
    t = pq.read_table(f)
    i = t.column_names.index("views_28d")  # the features change after the batch was scored (still plausible)
    pq.write_table(t.set_column(i, "views_28d", pc.add(t["views_28d"], pa.scalar(1, t["views_28d"].type))), f)
    validate.run(ctx, layer="features")  # and pass their gate as they now are
    with pytest.raises(PublishError, match="scored from features .* but the features gate passed"):
        publish.run(ctx, task="cvr")
    assert live_batches(conn)[0] == 0  # nothing reached the views
    score.run(ctx, task="cvr", full=True)
    validate.run(ctx, task="cvr")
    assert publish.run(ctx, task="cvr").ids["status"] == "published"
