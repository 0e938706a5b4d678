"""Three tasks served side by side: salary (with its interval), category (top3 as jsonb) and cvr, each with its
own storage, view, gates and rollback; and migration 0003 on a database that already serves p50-only batches."""

import json

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobcast.errors import PublishError, ValidationFailed
from jobcast.publish.store import BatchInfo, publish, rollback
from jobcast.storage import write_manifest
from jobcast.tasks import get, names

from conftest import REPO, make_ctx
from test_publish import REASONS, write_batch

pytestmark = pytest.mark.integration

DATE = "2026-10-30"
# Quotes, a comma and a backslash exercise the CSV quoting on the way into COPY and the JSON escaping in top3.
LABELS = ["営業", "エンジニア", "事務・アシスタント", '販売 "店長候補", 接客\\サービス', "製造"]


def top3(first: str, p: float) -> str:
    others = [label for label in LABELS if label != first]
    rest = (1 - p) * 0.9
    return json.dumps([{"category": first, "probability": p}, {"category": others[0], "probability": rest * 0.7},
                       {"category": others[1], "probability": rest * 0.3}], ensure_ascii=False)


def write_category_batch(path, job_ids, categories=None, probability=0.6, top3_text=None, labels=LABELS):
    categories = categories or [LABELS[i % len(LABELS)] for i in range(len(job_ids))]
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "job_id": pa.array(job_ids, pa.int64()), "category": pa.array(categories, pa.string()),
        "probability": pa.array([probability] * len(job_ids), pa.float64()),
        "top3": pa.array([top3_text or top3(c, probability) for c in categories], pa.string()),
        "reasons": pa.array([REASONS] * len(job_ids), pa.string()),
    }), path / "part-00000.parquet")
    write_manifest(path, {"task": "category", "logical_date": DATE, "rows": len(job_ids), "model_version": "c1",
                          "features_version": "f", "expected_rows": len(job_ids), "labels": labels})
    return path


def write_cvr_batch(path, job_ids, values=None):
    values = values or [0.01 + (i % 50) / 2000 for i in range(len(job_ids))]
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"job_id": pa.array(job_ids, pa.int64()), "cvr": pa.array(values, pa.float64()),
                             "reasons": pa.array([REASONS] * len(job_ids), pa.string())}),
                   path / "part-00000.parquet")
    write_manifest(path, {"task": "cvr", "logical_date": DATE, "rows": len(job_ids), "model_version": "v1",
                          "features_version": "f", "expected_rows": len(job_ids)})
    return path


def info(task, date=DATE, model="m1"):
    return BatchInfo(task=task, logical_date=date, model_version=model, data_version="d", run_id="test",
                     validation_success=True, report_path="/r.html")


def fetch(conn, query, *args):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_task_registry_matches_the_tables_and_views_in_sql(conn):
    for t in map(get, names()):
        table_cols = [r[0] for r in fetch(conn, "select attname from pg_attribute where attrelid = %s::regclass "
                                                "and attnum > 0 and not attisdropped", f"jobcast_internal.{t.table}")]
        assert sorted(table_cols) == sorted(("batch_id", *t.columns)), t.name
        view_cols = [r[0] for r in fetch(conn, "select attname from pg_attribute where attrelid = %s::regclass "
                                               "and attnum > 0 order by attnum", t.qualified_view)]
        # reasons (migration 0006) follows the lineage columns: CREATE OR REPLACE VIEW adds columns at the end only
        assert view_cols == [*t.columns[:-1], "batch_id", "model_version", "prediction_date", "reasons"], t.name


def test_category_batch_reads_back_through_the_view_with_top3_as_jsonb(tmp_path, db_url, conn):
    cats = [LABELS[3], LABELS[0], LABELS[1]]
    out = publish(lambda: psycopg2.connect(db_url), write_category_batch(tmp_path / "c", [1, 2, 3], cats, 0.91),
                  info("category"))
    assert out["status"] == "published"
    rows = fetch(conn, "select job_id, category, probability, top3, jsonb_typeof(top3), top3 -> 0 ->> 'category', "
                       "model_version, prediction_date::text from predictions.job_category order by job_id")
    assert [r[0] for r in rows] == [1, 2, 3]
    for (job_id, category, probability, doc, typ, first, model, day), want in zip(rows, cats):
        assert category == want and probability == 0.91 and typ == "array" and first == want
        assert doc == json.loads(top3(want, 0.91))  # psycopg2 decodes jsonb: the same list, Japanese text intact
        assert (model, day) == ("m1", DATE)
    # jsonb is queryable by web apps: the runner-up category of job 2.
    assert fetch(conn, "select top3 -> 1 ->> 'category' from predictions.job_category where job_id = 2") == [(LABELS[1],)]


def test_cvr_batch_reads_back_through_the_view(tmp_path, db_url, conn):
    publish(lambda: psycopg2.connect(db_url), write_cvr_batch(tmp_path / "v", [10, 11], [0.02, 0.035]), info("cvr"))
    assert fetch(conn, "select job_id, cvr, prediction_date::text from predictions.job_cvr order by 1") == [
        (10, 0.02, DATE), (11, 0.035, DATE)]


def test_rollback_of_one_task_leaves_the_others_live(tmp_path, db_url, conn):
    factory = lambda: psycopg2.connect(db_url)  # noqa: E731
    sal = [publish(factory, write_batch(tmp_path / f"s{i}", [1, 2]), info("salary"))["batch_id"] for i in range(2)]
    cat = [publish(factory, write_category_batch(tmp_path / f"c{i}", [1, 2, 3][: 2 + i]), info("category", model=f"c{i}"))
           ["batch_id"] for i in range(2)]
    cvr = publish(factory, write_cvr_batch(tmp_path / "v", [1]), info("cvr"))["batch_id"]

    def live():
        return {t: fetch(conn, f"select distinct batch_id from {get(t).qualified_view}")[0][0] for t in ("salary", "category", "cvr")}

    assert live() == {"salary": sal[1], "category": cat[1], "cvr": cvr}
    c = factory()
    try:
        assert rollback(c, "category")["live_batch_id"] == cat[0]
        assert live() == {"salary": sal[1], "category": cat[0], "cvr": cvr}
        assert fetch(conn, "select count(*), min(model_version) from predictions.job_category") == [(2, "c0")]
        with pytest.raises(PublishError, match="rollback cvr: no earlier published batch"):
            rollback(c, "cvr")
        assert rollback(c, "salary")["live_batch_id"] == sal[0]
        assert live() == {"salary": sal[0], "category": cat[0], "cvr": cvr}
    finally:
        c.close()


@pytest.mark.parametrize("task, write, match", [
    ("salary", lambda p: write_batch(p, [1, 2], [3e6, 4e6]), None),
    ("category", lambda p: write_category_batch(p, [1], top3_text="not json"), "does not fit its column"),
    ("category", lambda p: write_category_batch(p, [1], probability=1.5), "category_rows_probability"),
    ("cvr", lambda p: write_cvr_batch(p, [1, 2], [0.01, 1.0]), "cvr_rows_probability"),
])
def test_the_tables_refuse_rows_that_break_their_invariants(tmp_path, db_url, conn, task, write, match):
    path = write(tmp_path / "bad")
    if task == "salary":  # p10 above p50: swap the columns the helper wrote
        t = pq.read_table(path / "part-00000.parquet")
        t = t.set_column(1, "salary_p10", t.column("salary_p90"))
        pq.write_table(t, path / "part-00000.parquet")
        match = "salary_rows_quantiles_ordered"
    with pytest.raises(PublishError, match=match):
        publish(lambda: psycopg2.connect(db_url), path, info(task))
    assert fetch(conn, "select status from predictions.batches") == [("failed",)]
    assert fetch(conn, f"select count(*) from {get(task).qualified_view}") == [(0,)]
    assert fetch(conn, "select count(*) from pg_tables where schemaname = 'jobcast_internal' and tablename like %s",
                 f"{get(task).table}_b%") == [(0,)]


# --- the gates, through jobs/validate and jobs/publish (real GX) -------------------------------------------

def predictions_dir(settings, task):
    return settings.data_dir / "predictions" / task / f"dt={DATE}"


def write_salary_predictions(settings, job_ids, values=None):
    path = write_batch(predictions_dir(settings, "salary"), job_ids, values)
    write_manifest(path, {"task": "salary", "logical_date": DATE, "rows": len(job_ids), "model_version": "s1",
                          "features_version": "f", "expected_rows": len(job_ids)})
    return path


def failed(settings, task):
    from jobs.validate import read_verdict

    return read_verdict(settings, task, DATE)["failed"]


def failed_types(settings, task):
    return [f["type"] for f in failed(settings, task)]


def test_category_and_cvr_batches_pass_their_gates_and_publish(settings, conn):
    from jobs import publish as publish_step
    from jobs.validate import validate_predictions, write_verdict

    ctx = make_ctx(settings, DATE)
    # Upstream, the features gate passed on the features these batches name ("f"): publish requires it. And it
    # archives what a batch was made from (jobcast.archive): the day's raw snapshot and the model version.
    write_verdict(settings, "features", DATE, {"subject": "features", "success": True, "content_version": "f"})
    for d in (settings.data_dir / "raw" / "job_postings" / f"dt={DATE}", settings.models_dir / "category" / "c1",
              settings.models_dir / "cvr" / "v1"):
        d.mkdir(parents=True)
        (d / "part-0").write_text(str(d))
    write_category_batch(predictions_dir(settings, "category"), list(range(1, 51)))
    write_cvr_batch(predictions_dir(settings, "cvr"), list(range(1, 51)))
    for task in ("category", "cvr"):
        verdict = validate_predictions(ctx, task)
        assert verdict["success"] and verdict["suite"] == f"predictions_{task}" and verdict["evaluated"] >= 6
        res = publish_step.run(ctx, task=task)
        assert res.ids["status"] == "published" and res.rows == 50
    lineage = fetch(conn, "select lineage from predictions.batches where task = 'cvr'")[0][0]
    assert lineage["model"]["path"] == "cvr/v1" and lineage["raw"]["job_postings"]["nfiles"] == 1
    assert fetch(conn, "select count(*) from predictions.job_category where top3 -> 0 ->> 'category' = category") == [(50,)]
    assert fetch(conn, "select count(*), min(model_version) from predictions.job_cvr") == [(50, "v1")]


def test_category_outside_the_label_set_fails_validation_and_publishes_nothing(settings, conn):
    from jobs import publish as publish_step
    from jobs.validate import validate_predictions

    ctx = make_ctx(settings, DATE)
    cats = [LABELS[0]] * 9 + ["宇宙飛行士"]
    write_category_batch(predictions_dir(settings, "category"), list(range(1, 11)), cats)
    with pytest.raises(ValidationFailed,
                       match=r"predictions_category failed .*expect_column_values_to_be_in_set\(column=category\) .*宇宙飛行士"):
        validate_predictions(ctx, "category")
    assert failed_types(settings, "category") == ["expect_column_values_to_be_in_set"]
    with pytest.raises(PublishError, match="validation failed"):
        publish_step.run(ctx, task="category")
    assert fetch(conn, "select count(*) from predictions.batches") == [(0,)]


def test_category_top3_that_disagrees_with_the_row_fails_validation(settings):
    from jobs.validate import validate_predictions

    # Sums above one, and the first entry is not the row's category.
    bad = json.dumps([{"category": LABELS[1], "probability": 0.6}, {"category": LABELS[0], "probability": 0.5},
                      {"category": LABELS[2], "probability": 0.1}], ensure_ascii=False)
    write_category_batch(predictions_dir(settings, "category"), [1, 2], [LABELS[0]] * 2, top3_text=bad)
    with pytest.raises(ValidationFailed):
        validate_predictions(make_ctx(settings, DATE), "category")
    assert sorted(f["kwargs"]["column"] for f in failed(settings, "category")) == ["top3_first_is_category", "top3_prob_sum"]
    # Two entries instead of three, or a probability that is text: top3 is not well formed.
    short = json.dumps(json.loads(top3(LABELS[0], 0.6))[:2], ensure_ascii=False)
    write_category_batch(predictions_dir(settings, "category"), [1, 2], [LABELS[0]] * 2, top3_text=short)
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_in_set\(column=top3_well_formed\) unexpected=2"):
        validate_predictions(make_ctx(settings, DATE), "category")
    assert sorted(f["kwargs"]["column"] for f in failed(settings, "category")) == ["top3_prob_sum", "top3_well_formed"]
    text_prob = json.dumps([{**e, "probability": str(e["probability"])} for e in json.loads(top3(LABELS[0], 0.6))],
                           ensure_ascii=False)
    write_category_batch(predictions_dir(settings, "category"), [1, 2], [LABELS[0]] * 2, top3_text=text_prob)
    with pytest.raises(ValidationFailed, match=r"top3_well_formed"):
        validate_predictions(make_ctx(settings, DATE), "category")


def test_category_batch_without_labels_in_its_manifest_is_a_clear_error(settings):
    from jobcast.errors import InputDataError
    from jobs.validate import validate_predictions

    path = write_category_batch(predictions_dir(settings, "category"), [1])
    manifest = json.loads((path / "_manifest.json").read_text(encoding="utf-8"))
    del manifest["labels"]
    write_manifest(path, manifest)
    with pytest.raises(InputDataError, match=r"_manifest.json: no \"labels\" list"):
        validate_predictions(make_ctx(settings, DATE), "category")


def test_salary_batch_with_p10_above_p50_fails_validation(settings):
    from jobs.validate import validate_predictions

    path = write_salary_predictions(settings, [1, 2, 3])
    t = pq.read_table(path / "part-00000.parquet")
    pq.write_table(t.set_column(1, "salary_p10", pa.array([3.5e6, 1e6, 1e6])), path / "part-00000.parquet")
    with pytest.raises(ValidationFailed, match=r"expect_column_pair_values_a_to_be_greater_than_b\(column_A=salary_p50, "
                                               r"column_B=salary_p10\) unexpected=1"):
        validate_predictions(make_ctx(settings, DATE), "salary")
    assert [(f["type"], f["kwargs"]["column_B"], f["unexpected_count"]) for f in failed(settings, "salary")] == [
        ("expect_column_pair_values_a_to_be_greater_than_b", "salary_p10", 1)]


def test_cvr_outside_the_open_range_fails_validation(settings):
    from jobs.validate import validate_predictions

    write_cvr_batch(predictions_dir(settings, "cvr"), [1, 2, 3], [0.02, 0.0, 0.03])
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_between\(column=cvr"):
        validate_predictions(make_ctx(settings, DATE), "cvr")


def test_category_shares_far_from_the_live_batch_fail_the_drift_gate(tmp_path, settings, db_url):
    from jobs.validate import validate_predictions

    publish(lambda: psycopg2.connect(db_url), write_category_batch(tmp_path / "live", list(range(100))), info("category"))
    ctx = make_ctx(settings, DATE)
    # Same shares as live (every label 20%): passes, and the drift gate ran.
    write_category_batch(predictions_dir(settings, "category"), list(range(100)))
    assert validate_predictions(ctx, "category")["success"]
    assert (settings.reports_dir / "validations" / "category_drift" / f"dt={DATE}.json").is_file()
    # 80% in one category: the shares moved far from the live batch's.
    cats = [LABELS[0]] * 80 + LABELS[1:] * 5
    write_category_batch(predictions_dir(settings, "category"), list(range(100)), cats)
    with pytest.raises(ValidationFailed, match="drift_category failed 1 of 3 .*expect_column_kl_divergence_to_be_less_than"):
        validate_predictions(ctx, "category")
    assert failed_types(settings, "category") == ["expect_column_kl_divergence_to_be_less_than"]


def test_cvr_drift_gate_compares_with_the_live_batch(tmp_path, settings, db_url):
    from jobs.validate import validate_predictions

    publish(lambda: psycopg2.connect(db_url), write_cvr_batch(tmp_path / "live", list(range(200))), info("cvr"))
    ctx = make_ctx(settings, DATE)
    write_cvr_batch(predictions_dir(settings, "cvr"), list(range(200)))
    assert validate_predictions(ctx, "cvr")["success"]
    write_cvr_batch(predictions_dir(settings, "cvr"), list(range(200)), [0.2] * 200)  # a broken model: constant, 6x
    with pytest.raises(ValidationFailed, match="drift_cvr failed"):
        validate_predictions(ctx, "cvr")
    assert set(failed_types(settings, "cvr")) == {"expect_column_kl_divergence_to_be_less_than",
                                                  "expect_column_median_to_be_between"}


def test_live_summary_reports_quality_per_task_when_truth_exists(tmp_path, settings, db_url, conn):
    from jobcast.report import live_summary

    factory = lambda: psycopg2.connect(db_url)  # noqa: E731
    publish(factory, write_batch(tmp_path / "s", [1, 2], [3e6, 5e6]), info("salary"))
    publish(factory, write_category_batch(tmp_path / "c", [1, 2], [LABELS[0], LABELS[1]]), info("category"))
    publish(factory, write_cvr_batch(tmp_path / "v", [1, 2], [0.02, 0.04]), info("cvr"))
    lines = live_summary(settings, ("salary", "category", "cvr"))
    assert [line.split(":")[0] for line in lines] == ["predictions.job_salary", "predictions.job_category", "predictions.job_cvr"]
    assert all("rows=2" in line and "vs_truth" not in line for line in lines)  # no truth schema: no quality figure
    with conn.cursor() as cur:
        cur.execute("create schema truth")
        cur.execute("create table truth.job_salary (job_id bigint, salary double precision)")
        cur.execute("insert into truth.job_salary values (1, 3.1e6), (2, 4.7e6)")
        cur.execute("create table truth.job_category (job_id bigint, category text)")
        cur.execute("insert into truth.job_category values (1, %s), (2, %s)", (LABELS[0], LABELS[2]))
        cur.execute("create table truth.job_cvr_daily (job_id bigint, day date, cvr double precision)")
        cur.execute("insert into truth.job_cvr_daily values (1, %s, 0.03), (2, %s, 0.05), (1, '2026-10-01', 0.9)",
                    (DATE, DATE))
    lines = live_summary(settings, ("salary", "category", "cvr"))
    assert lines[0].endswith("salary_mae_vs_truth=200,000 JPY")
    assert lines[1].endswith("category_accuracy_vs_truth=0.500")
    assert lines[2].endswith("cvr_mae_vs_truth=0.0100")  # only the prediction date's truth counts


# --- migration 0003 on a database that already serves p50-only salary batches ---------------------------

def test_migration_0003_keeps_old_salary_batches_readable_and_rollback_to_them_works(tmp_path, empty_db_url):
    from jobcast.db.migrate import migrate

    url = empty_db_url
    before = tmp_path / "migrations"
    before.mkdir()
    for f in sorted((REPO / "sql" / "migrations").glob("000[12]_*.sql")):
        (before / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    c = psycopg2.connect(url)
    migrate(c, before)
    c.close()
    # A live p50-only batch, stored the way publish did before 0003.
    c = psycopg2.connect(url)
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute("insert into predictions.batches (task, logical_date, model_version, status, published_at) "
                    "values ('salary', '2026-10-29', 'old', 'published', now()) returning batch_id")
        old = cur.fetchone()[0]
        cur.execute(f"create table jobcast_internal.salary_rows_b{old} (like jobcast_internal.salary_rows)")
        cur.execute(f"insert into jobcast_internal.salary_rows_b{old} values ({old}, 1, 3e6), ({old}, 2, 4e6)")
        cur.execute(f"alter table jobcast_internal.salary_rows attach partition jobcast_internal.salary_rows_b{old} "
                    f"for values in ({old})")
        cur.execute("insert into jobcast_internal.current_batch (task, batch_id) values ('salary', %s)", (old,))
    c.close()

    c = psycopg2.connect(url)
    assert migrate(c, REPO / "sql" / "migrations")[0] == "0003_three_tasks.sql"  # then any later ones
    c.close()
    c = psycopg2.connect(url)
    c.autocommit = True
    assert fetch(c, "select job_id, salary_p10, salary_p50, salary_p90, model_version from predictions.job_salary "
                    "order by 1") == [(1, None, 3e6, None, "old"), (2, None, 4e6, None, "old")]
    new = publish(lambda: psycopg2.connect(url), write_batch(tmp_path / "new", [1, 2, 3]), info("salary"))
    assert fetch(c, "select count(*), count(salary_p10), count(salary_p90) from predictions.job_salary") == [(3, 3, 3)]
    # New batches are complete even though the parent allows NULL for the old ones.
    assert fetch(c, "select attname from pg_attribute where attrelid = %s::regclass and attname like 'salary_p%%' "
                    "and attnotnull order by 1", f"jobcast_internal.salary_rows_b{new['batch_id']}") == [
        ("salary_p10",), ("salary_p50",), ("salary_p90",)]
    path = tmp_path / "holes"
    write_batch(path, [1, 2])
    t = pq.read_table(path / "part-00000.parquet")
    pq.write_table(t.set_column(1, "salary_p10", pa.array([None, 1e6], pa.float64())), path / "part-00000.parquet")
    with pytest.raises(PublishError, match="null prediction values"):
        publish(lambda: psycopg2.connect(url), path, info("salary", date="2026-10-31"))
    rollback(c, "salary")
    assert fetch(c, "select batch_id, count(*), count(salary_p10) from predictions.job_salary group by 1") == [(old, 2, 0)]
    c.close()


def test_the_documented_lookup_examples_run(conn):
    for t in map(get, names()):
        assert fetch(conn, t.example.replace("$1", "%s"), 1) == [], t.example  # valid SQL on an empty view


def test_every_sql_example_in_the_docs_runs(conn):
    """docs/prediction-tables.md's example queries are valid SQL on the migrated schema (empty views here; the
    board's own app tables as the demo has them)."""
    from jobcast.docs import EXAMPLES

    with conn.cursor() as cur:
        cur.execute((REPO / "sql" / "demo" / "app_schema.sql").read_text())
    block = EXAMPLES.split("```sql", 1)[1].split("```", 1)[0]
    queries = ["\n".join(line for line in part.splitlines() if not line.strip().startswith("--")).strip()
               for part in block.split(";")]
    queries = [q for q in queries if q]
    for q in queries:
        if "$1" in q:
            fetch(conn, q.replace("$1", "%s"), 1)
        else:
            fetch(conn, q.replace("%", "%%"))
    assert len(queries) >= 6
