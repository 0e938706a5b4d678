"""The three models on real Spark features, LightGBM, the file registry and the gate."""

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import psycopg2
import pyarrow.parquet as pq
import pytest

from jobcast.errors import ModelError
from jobcast.models import registry
from jobcast.models.task_models import Predictor
from jobcast.storage import partition
from jobcast.tasks import get, names

from conftest import SMALL_DATE, make_ctx, with_params
from jobs import extract, features, publish, score, train, validate

TASKS = names()  # the declared prediction tasks

pytestmark = pytest.mark.e2e


def test_three_models_are_registered_scored_validated_and_published(champions, conn, db_url):
    settings = champions  # window (6 days, tests/params-small.yaml) + train for each task, as `jobcast run` does
    ctx = make_ctx(settings)
    validate.run(ctx, layer="features")  # publish requires every gate: features, predictions, drift
    for task in TASKS:
        version_dir = registry.champion_dir(settings, task)
        meta = registry.read_metadata(version_dir)
        # The registry entry: model files, feature schema, params, metrics, data and code versions.
        assert {"model.txt", "model.json", "feature_schema.json", "metadata.json"} <= {p.name for p in version_dir.iterdir()}
        assert meta["params"] == get(task).train_params(settings) and len(meta["feature_partitions"]) == 6
        assert all(h.endswith(".dir") for h in meta["feature_partitions"].values())  # DVC hashes (dvc.lock format)
        assert meta["data_version"] and meta["code_version"] and meta["window_days"] == 6
        assert "no champion yet" in registry.champion(settings, task)["reason"]
        score.run(ctx, task=task)
        validate.run(ctx, task=task)
        publish.run(ctx, task=task)

    m = {t: registry.read_metadata(registry.champion_dir(settings, t))["metrics"] for t in TASKS}
    assert m["salary"]["mae"] < m["salary"]["baseline_mae"] and 0.6 < m["salary"]["coverage_p10_p90"] < 0.95
    assert m["category"]["accuracy"] > 0.8 > m["category"]["baseline_accuracy"] and m["category"]["macro_f1"] > 0.7
    assert len(m["category"]["confusion_matrix"]["labels"]) == len(m["category"]["confusion_matrix"]["rows_true_cols_pred"])
    assert m["cvr"]["logloss"] < m["cvr"]["baseline_logloss"] * 1.01 and m["cvr"]["auc"] > 0.5
    assert m["cvr"]["calibration_curve"] and all(0 < c["predicted"] < 1 for c in m["cvr"]["calibration_curve"])
    # Against the incomplete ticks of the holdout: above the "tags most postings tick" baseline.
    assert m["job_tags"]["micro_f1"] > max(m["job_tags"]["baseline_micro_f1"], 0.4)

    app = psycopg2.connect(db_url)  # a web app's connection
    with app, app.cursor() as cur:
        cur.execute("select count(*), bool_and(salary_p10 <= salary_p50 and salary_p50 <= salary_p90) from predictions.job_salary")
        n_salary, ordered = cur.fetchone()
        cur.execute("select count(*), avg((p.category = t.category)::int) from predictions.job_category p "
                    "join truth.job_category t using (job_id)")
        n_category, accuracy = cur.fetchone()
        cur.execute("select top3, category, probability from predictions.job_category limit 1")
        top3, category, probability = cur.fetchone()
        cur.execute("select count(*), min(p.cvr), max(p.cvr), avg(abs(p.cvr - t.cvr)) from predictions.job_cvr p "
                    "join truth.job_cvr_daily t on t.job_id = p.job_id and t.day = p.prediction_date")
        n_cvr, lo, hi, cvr_mae = cur.fetchone()
        cur.execute("select count(*), avg(jsonb_array_length(tags)), bool_and(jsonb_typeof(probabilities) = 'object') "
                    "from predictions.job_tags")
        n_tags, tags_per_posting, objects = cur.fetchone()
        cur.execute(get("job_tags").quality.sql.format(view="predictions.job_tags"))  # micro-F1 against the true tags
        tags_f1 = cur.fetchone()[0]
        # Reasons: every row of every view has them, and one posting's four predictions with their reasons come
        # back in one round trip.
        for view in (get(t).qualified_view for t in TASKS):
            cur.execute(f"select count(*) from {view} where reasons is null or jsonb_array_length(reasons -> 'top') = 0")
            assert cur.fetchone()[0] == 0, view
        cur.execute("""select s.salary_p50, s.reasons, c.category, c.reasons, v.cvr, v.reasons, t.tags, t.reasons
                       from predictions.job_salary s join predictions.job_category c using (job_id)
                       join predictions.job_cvr v using (job_id) join predictions.job_tags t using (job_id)
                       order by s.job_id limit 50""")
        rows = cur.fetchall()
    app.close()
    for p50, r_salary, _cat, r_category, cvr, r_cvr, _tags, r_tags in rows:
        for r in (r_salary, r_category, r_cvr, r_tags):
            assert 1 <= len(r["top"]) <= 3 and all(e["name"].strip() for e in r["top"]), r
            assert abs(r["base"] + sum(e["effect"] for e in r["top"]) + r["rest"] - r["value"]) < 1e-4, r
            assert sorted((abs(e["effect"]) for e in r["top"]), reverse=True) == [abs(e["effect"]) for e in r["top"]]
        assert abs(r_salary["value"] - np.log(p50)) < 1e-4  # the model's raw scale: log salary
        assert abs(r_cvr["value"] - np.log(cvr / (1 - cvr))) < 1e-3  # and the logit of the cvr
    print("reasons, e.g.", json.dumps(rows[0][1], ensure_ascii=False), json.dumps(rows[0][3], ensure_ascii=False),
          json.dumps(rows[0][5], ensure_ascii=False), json.dumps(rows[0][7], ensure_ascii=False))
    named = [e["name"] for row in rows for r in row[1::2] if isinstance(r, dict) for e in r["top"]]
    assert any(n.startswith(("title", "description")) for n in named)  # text reasons are n-grams, not term ids
    assert sum(n.startswith("text term #") for n in named) < 0.2 * len(named)
    print("job_tags micro-F1 vs truth", tags_f1, "tags per posting", tags_per_posting)
    assert n_tags == n_salary and objects and 1 < tags_per_posting < 8 and tags_f1 > 0.6
    assert n_salary == n_category == n_cvr > 0 and ordered
    assert accuracy > 0.85  # against the TRUE category, although 15% of training labels were missing or wrong
    assert len(top3) == 3 and top3[0]["category"] == category and abs(top3[0]["probability"] - probability) < 1e-5
    assert 0 < lo < hi < 0.5 and cvr_mae < 0.02


def test_the_gate_refuses_a_worse_model_and_keeps_the_champion(champions):
    settings = champions
    champ = registry.champion(settings, "category")["version"]
    # Both parts crippled: the blend would otherwise fall back on the text model alone and be as good as before.
    worse = with_params(settings, **{"train.category.num_boost_round": 2, "train.category.learning_rate": 0.01,
                                     "train.category.num_leaves": 2, "train.category.text_c": 1e-5})
    res = train.run(make_ctx(worse), task="category")
    assert res.ids["promoted"] is False
    assert res.metrics["reason"].startswith(f"kept champion {champ}: new model is worse")
    assert registry.champion(settings, "category")["version"] == champ  # the pointer did not move
    assert res.ids["model_version"] in {m["version"] for m in registry.list_versions(settings, "category")}  # kept for inspection


def test_a_model_whose_feature_schema_does_not_match_is_refused_clearly(champions):
    settings = champions
    feats = partition(settings.data_dir, "features", date=SMALL_DATE)
    df = pq.read_table(feats).to_pandas().drop(columns=["job_cvr_28d"])
    model = Predictor.load("cvr", registry.champion_dir(settings, "cvr"))
    text = model.schema.text_spec
    with pytest.raises(ModelError, match=r"lack columns \['job_cvr_28d'\]"):
        model.schema.check(list(df.columns), text, "features of test")
    with pytest.raises(ModelError, match="'hash_bits': 12.* but the model expects .*'hash_bits': 18"):
        model.schema.check(list(df.columns) + ["job_cvr_28d"], {**text, "hash_bits": 12}, "features of test")
    # a champion trained before the word clusters (params.yaml's default since) is refused, saying how to keep it
    assert text["word_clusters"]
    before = {k: v for k, v in text.items() if k != "word_clusters"}
    old = dataclasses.replace(model.schema, text_spec=before)
    with pytest.raises(ModelError, match=r"features.text.word_clusters: false for this model's word clusters"):
        old.check(list(df.columns) + ["job_cvr_28d"], text, "features of test")


def test_categories_never_seen_in_training_are_scored(champions):
    settings = champions
    df = pq.read_table(partition(settings.data_dir, "features", date=SMALL_DATE)).to_pandas().head(50)
    df["prefecture"] = "火星県"              # unseen categorical values: LightGBM's "missing" branch
    df["employment_type"] = "ギグワーク"
    df["category_filed"] = "宇宙開発"
    for task in TASKS:
        out = Predictor.load(task, registry.champion_dir(settings, task)).predict(df)
        assert len(out) == 50 and not out.isna().any().any(), task
    cat = Predictor.load("category", registry.champion_dir(settings, "category"))
    assert set(cat.predict(df)["category"]) <= set(cat.labels)  # never invents a label


def test_features_ignore_events_on_or_after_the_logical_date(settings, generated, conn):
    ctx = make_ctx(settings)
    extract.run(ctx)
    features.run(ctx)
    feats = partition(settings.data_dir, "features", date=ctx.ds)
    before = pq.read_table(feats).to_pandas().set_index("job_id")
    job = int(before.index[0])
    # Plant a burst of views and applies on the logical date and on the next day.
    with conn, conn.cursor() as cur:
        cur.execute("select max(event_id) from app.events")
        next_id = cur.fetchone()[0] + 1
        for i, (when, kind) in enumerate([(f"{ctx.ds} 12:00+09", "view"), (f"{ctx.ds} 12:01+09", "apply"),
                                          (f"{ctx.logical_date + dt.timedelta(days=1)} 09:00+09", "apply")] * 20):
            cur.execute("insert into app.events values (%s, %s, 1, %s, %s)", (next_id + i, job, kind, when))
    extract.run(ctx, refresh=True)
    raw = pq.read_table(partition(settings.data_dir, "raw", "events", date=ctx.ds)).to_pandas()
    assert (raw["event_id"] >= next_id).sum() == 40  # the logical date's events are in the snapshot (labels)...
    features.run(ctx)
    after = pq.read_table(feats).to_pandas().set_index("job_id")
    cols = ["views_7d", "applies_7d", "views_28d", "applies_28d", "job_cvr_28d", "company_cvr_28d", "category_cvr_28d"]
    pd.testing.assert_frame_equal(after.loc[[job], cols], before.loc[[job], cols])  # ...but no feature moved
    # And the counts are exactly the SQL counts of the 7 days before the logical date.
    with conn.cursor() as cur:
        cur.execute("""select count(*) filter (where event_type = 'view'), count(*) filter (where event_type = 'apply')
                       from app.events where job_id = %s and occurred_at >= (%s::date - 7)::timestamp at time zone 'Asia/Tokyo'
                       and occurred_at < %s::date::timestamp at time zone 'Asia/Tokyo'""", (job, ctx.ds, ctx.ds))
        views, applies = cur.fetchone()
    assert (after.loc[job, "views_7d"], after.loc[job, "applies_7d"]) == (views, applies)


def test_cvr_labels_come_from_the_day_and_features_from_before_it(champions):
    settings = champions
    ctx = make_ctx(settings)
    data = train.load_training(ctx, "cvr", 6, 2)
    frame = pd.concat([data.train, data.holdout])
    assert (frame["views"] > 0).all() and (frame["applies"] <= frame["views"]).all()
    assert sorted(data.holdout["logical_date"].astype(str).unique()) == ["2026-09-29", "2026-09-30"]
    assert "2026-09-29" not in set(data.train["logical_date"].astype(str))
    assert np.isfinite(frame["views_7d"]).all()
    # Labels match the day's raw events for a posting (the Spark join against the raw snapshot).
    job, day = data.holdout.iloc[0][["job_id", "logical_date"]]
    ev = pq.read_table(partition(settings.data_dir, "raw", "events", date=str(day))).to_pandas()
    start, end = __import__("jobcast.sources", fromlist=["x"]).day_bounds(day, settings.param("run.timezone"))
    mine = ev[(ev["job_id"] == job) & (ev["occurred_at"] >= pd.Timestamp(start)) & (ev["occurred_at"] < pd.Timestamp(end))]
    assert data.holdout.iloc[0]["views"] == (mine["event_type"] == "view").sum()


def test_training_rows_are_sampled_in_spark_to_the_cap_deterministically_with_unbiased_weights(champions):
    """train.<task>.max_rows bounds what the driver collects, whatever the window's size."""
    ctx = make_ctx(champions)
    full = train.load_training(ctx, "cvr", 6, 2)
    n = len(full.train)
    capped = train.load_training(ctx, "cvr", 6, 2, max_rows=n // 4, max_holdout_rows=500)
    again = train.load_training(ctx, "cvr", 6, 2, max_rows=n // 4, max_holdout_rows=500)
    fraction = capped.sampling["train"]["fraction"]
    assert fraction == pytest.approx(0.25, rel=0.01) and full.sampling["train"]["fraction"] == 1.0
    assert 0.8 * n / 4 < len(capped.train) < 1.2 * n / 4  # a Bernoulli draw: the cap in expectation
    assert np.allclose(capped.train["sample_weight"], 1 / fraction)
    assert len(capped.holdout) < 1.2 * 500 and capped.sampling["holdout"]["window_rows"] == len(full.holdout)
    pd.testing.assert_frame_equal(capped.train.drop(columns="text_terms"), again.train.drop(columns="text_terms"))
    # Drawn by posting (the text model's rows stay bounded by the cap): a kept posting keeps all its days.
    kept = capped.train.groupby("job_id").size()
    assert (kept == full.train.groupby("job_id").size()[kept.index]).all()
    # The weighted views of the sample estimate the window's total.
    assert (capped.train["views"] * capped.train["sample_weight"]).sum() == pytest.approx(full.train["views"].sum(), rel=0.1)
    # cvr keeps each posting's text terms on one row (its newest), not on every (posting, day) row.
    with_text = capped.train[capped.train["text_terms"].notna()]
    assert with_text["job_id"].is_unique and set(with_text["job_id"]) == set(capped.train["job_id"])
    newest_sampled = capped.train.groupby("job_id")["logical_date"].max()
    assert (with_text["logical_date"].to_numpy() == newest_sampled[with_text["job_id"]].to_numpy()).all()
    # Posting-level tasks: one row per posting, its newest snapshot.
    cat = train.load_training(ctx, "category", 6, 2)
    assert cat.train["job_id"].is_unique and cat.train["category_filed"].notna().all()
    assert not set(cat.train["job_id"]) & set(cat.holdout["job_id"])
    paths, _, _ = train.window_partitions(ctx, 6)
    seen = pd.concat([pq.read_table(p, columns=["job_id", "logical_date"]).to_pandas() for p in paths])
    newest = seen.groupby("job_id")["logical_date"].max()
    both = pd.concat([cat.train, cat.holdout])
    assert (both["logical_date"].to_numpy() == newest[both["job_id"]].to_numpy()).all()
    # The terms, joined to the sampled rows after the draw, are those of the row's own day.
    src = pd.concat([pq.read_table(p, columns=["job_id", "logical_date", "text_terms"]).to_pandas() for p in paths])
    src = src.set_index(["job_id", "logical_date"])["text_terms"]
    for rows in (cat.train, cat.holdout, with_text):
        assert rows["text_terms"].notna().all()
        for job, day, terms in rows[["job_id", "logical_date", "text_terms"]].head(300).itertuples(index=False):
            assert list(terms) == list(src[(job, day)])
    assert list(cat.train.columns) == [*pq.ParquetDataset(paths[0]).schema.names, "sample_weight"]  # the window's order


def test_a_bad_row_cap_is_refused_with_its_key():
    from jobcast.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.cvr.max_rows=-5"):
        train._cap(-5, "train.cvr.max_rows")
    for bad in (0, "2", True):
        with pytest.raises(ConfigError, match=rf"train.text_workers={bad!r}"):
            train._workers(type("S", (), {"param": lambda self, key: bad})())


def test_features_from_older_feature_code_are_refused_by_train_and_rebuilt_by_window(champions):
    from jobcast.errors import InputDataError
    from jobcast.storage import read_manifest, write_manifest
    from jobs import window

    settings = champions
    ctx = make_ctx(settings)
    old_day = partition(settings.data_dir, "features", date="2026-09-27")
    write_manifest(old_day, {**read_manifest(old_day), "features_version": 1})  # as an older release wrote it
    with pytest.raises(InputDataError, match=r"built by older feature code .*dt=2026-09-27.*jobcast window --date 2026-09-30"):
        train.run(ctx, task="cvr")
    assert window.run(ctx).metrics["built"] == 1  # only the stale day
    assert train.run(ctx, task="cvr").rows > 0


def test_a_model_version_whose_booster_does_not_match_its_files_is_refused_not_fed_a_wrong_shape(champions, tmp_path):
    import shutil

    settings = champions
    copy_dir = tmp_path / "salary-version"
    shutil.copytree(registry.champion_dir(settings, "salary"), copy_dir)
    meta = json.loads((copy_dir / "metadata.json").read_text())
    meta.pop("files")  # written by other training code, which recorded no digests: the shape guard must still hold
    (copy_dir / "metadata.json").write_text(json.dumps(meta))
    info = json.loads((copy_dir / "model.json").read_text())
    info.pop("booster_terms")  # as if written by training code that fed the booster no terms
    (copy_dir / "model.json").write_text(json.dumps(info))
    df = pq.read_table(partition(settings.data_dir, "features", date=SMALL_DATE)).to_pandas().head(20)
    with pytest.raises(ModelError, match=r"its booster takes \d+ features but this code builds \d+"):
        Predictor.load("salary", copy_dir).predict(df)
    info["stacked"] = [*info["stacked"], "text_from_the_future"]
    (copy_dir / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=r"stacked columns \['text_from_the_future'\] cannot be rebuilt"):
        Predictor.load("salary", copy_dir).predict(df)


def test_a_damaged_model_file_is_refused_before_lightgbm_reads_it(champions, tmp_path):
    import shutil

    copy_dir = tmp_path / "salary-version"
    shutil.copytree(registry.champion_dir(champions, "salary"), copy_dir)
    booster = copy_dir / "model.txt"
    booster.write_bytes(booster.read_bytes()[:1000])  # truncated: LightGBM itself would abort the process
    with pytest.raises(ModelError, match=r"model.txt: model version .* is damaged \(model.txt changed since training\)"):
        Predictor.load("salary", copy_dir)


@pytest.mark.parametrize("task", ["salary", "category"])
def test_incremental_scoring_rescores_only_changed_postings_and_equals_a_full_rescore(champions, task):
    """Unchanged postings carry yesterday's predictions of the same model; the partition equals a full rescore."""
    settings = champions
    day = dt.date.fromisoformat(SMALL_DATE)
    before = make_ctx(settings, (day - dt.timedelta(days=1)).isoformat())
    score.run(before, task=task, full=True)  # the window (6 days) built its features
    ctx = make_ctx(settings)
    inc = score.run(ctx, task=task)
    got = pq.read_table(partition(settings.data_dir, "predictions", task, date=SMALL_DATE)).to_pandas()
    manifest = json.loads((partition(settings.data_dir, "predictions", task, date=SMALL_DATE) / "_manifest.json").read_text())
    assert inc.metrics["carried"] > 0 and inc.metrics["rescored"] > 0, inc.metrics  # new postings went live that day
    assert manifest["carried_from"] == before.ds and manifest["carried"] + manifest["rescored"] == len(got)
    full = score.run(ctx, task=task, full=True)
    want = pq.read_table(partition(settings.data_dir, "predictions", task, date=SMALL_DATE)).to_pandas()
    assert full.metrics["carried"] == 0 and full.metrics["rescored"] == len(want)
    key = ["job_id"]
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True), want.sort_values(key, ignore_index=True), check_exact=True)


def test_a_new_model_version_rescores_everything(champions):
    settings = champions
    day = dt.date.fromisoformat(SMALL_DATE)
    before = make_ctx(settings, (day - dt.timedelta(days=1)).isoformat())
    score.run(before, task="salary", full=True)
    prev = partition(settings.data_dir, "predictions", "salary", date=before.ds)
    original = (prev / "_manifest.json").read_text()
    m = json.loads(original)
    m["model_version"] = "20000101-00000000"  # as if an older champion had scored it
    (prev / "_manifest.json").write_text(json.dumps(m))
    try:
        res = score.run(make_ctx(settings), task="salary")
    finally:
        (prev / "_manifest.json").write_text(original)
    assert res.metrics["carried"] == 0 and res.metrics["rescored"] == res.rows
