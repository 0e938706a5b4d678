import datetime as dt

import pytest

from jobcast.config import Settings, find_project_root
from jobcast.db.migrate import discover
from jobcast.errors import ConfigError, DatabaseError
from jobcast.sources import day_bounds

from conftest import REPO

pytestmark = pytest.mark.unit


def test_migrations_are_numbered_and_ordered():
    found = discover(REPO / "sql" / "migrations")
    assert [v for v, _, _ in found] == sorted(v for v, _, _ in found) and found[0][0] == 1


def test_badly_named_migration_is_refused(tmp_path):
    (tmp_path / "init.sql").write_text("select 1")
    with pytest.raises(DatabaseError, match="0001_name.sql"):
        discover(tmp_path)


def test_logical_day_is_a_tokyo_calendar_day():
    start, end = day_bounds(dt.date(2026, 10, 30), "Asia/Tokyo")
    assert start.isoformat() == "2026-10-30T00:00:00+09:00" and (end - start) == dt.timedelta(days=1)


def test_settings_come_from_env_over_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBCAST_PG_PORT", "55123")
    monkeypatch.setenv("JOBCAST_DATA_DIR", str(tmp_path))
    s = Settings.load(REPO)
    assert s.pg_port == 55123 and s.data_dir == tmp_path and s.param("train.salary.learning_rate")
    monkeypatch.setenv("JOBCAST_PG_PORT", "abc")
    with pytest.raises(ConfigError, match="JOBCAST_PG_PORT"):
        Settings.load(REPO)


def test_outside_a_project_the_error_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("JOBCAST_HOME", raising=False)
    with pytest.raises(ConfigError, match="JOBCAST_HOME"):
        find_project_root(tmp_path)


def test_params_override_file_merges_key_by_key(monkeypatch, tmp_path):
    override = tmp_path / "small.yaml"
    override.write_text("train:\n  window_days: 3\n  salary:\n    learning_rate: 0.5\n", encoding="utf-8")
    monkeypatch.delenv("JOBCAST_PARAMS_OVERRIDE", raising=False)
    base = Settings.load(REPO).params
    monkeypatch.setenv("JOBCAST_PARAMS_OVERRIDE", str(override))
    s = Settings.load(REPO)
    assert s.param("train.window_days") == 3 and s.param("train.salary.learning_rate") == 0.5
    assert s.param("train.holdout_days") == 7 and s.param("train.salary.num_leaves") == base["train"]["salary"]["num_leaves"]
    monkeypatch.setenv("JOBCAST_PARAMS_OVERRIDE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml"):
        Settings.load(REPO)


def test_every_declared_task_has_its_suites_and_is_in_the_dvc_matrix():
    """params.yaml `tasks` is what dvc.yaml's stage matrix reads (DVC cannot import the declarations): it must
    list exactly the declared tasks, in their order; each declared task has its predictions suite and checkpoint."""
    import yaml

    from jobcast import tasks

    assert yaml.safe_load((REPO / "params.yaml").read_text())["tasks"] == list(tasks.names())
    for t in tasks.all_tasks():
        suite = t.suite(REPO, "predictions")
        assert suite.is_file() and (suite.parent / "checkpoints" / suite.name).is_file(), t.name
        assert t.columns[0] == "job_id" and set(t.spark_schema.split(", ")) >= {"job_id long"}, t.name
        assert t.gate_metric[0] and t.objective, t.name
        if t.suite(REPO, "drift").is_file():  # a drift gate compares one of its outputs with the live batch
            assert t.drift_column in t.outputs, t.name


def test_the_cli_offers_exactly_the_declared_tasks():
    from jobcast import tasks
    from jobcast.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--date", "2026-10-30", "--task", "cvr"]).task == "cvr"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--date", "2026-10-30", "--task", "nope"])
    assert parser.parse_args(["run", "--date", "2026-10-30"]).tasks == list(tasks.names())


def test_shared_training_bounds_reach_every_task_and_a_tasks_own_value_wins(monkeypatch, tmp_path):
    import lightgbm as lgb
    import numpy as np

    from jobcast import tasks
    from jobcast.models import task_models as tm

    override = tmp_path / "bounds.yaml"
    override.write_text("train:\n  text_max_rows: 5000\n  category:\n    text_max_rows: 9000\n", encoding="utf-8")
    monkeypatch.setenv("JOBCAST_PARAMS_OVERRIDE", str(override))
    s = Settings.load(REPO)
    assert tasks.get("salary").train_params(s)["text_max_rows"] == 5000
    assert tasks.get("category").train_params(s)["text_max_rows"] == 9000
    assert tasks.get("cvr").train_params(s)["refit_max_rows"] == s.param("train.refit_max_rows")
    for bad in (0, 999, "2", True, 1.5):
        with pytest.raises(ConfigError, match=rf"train.text_max_rows .*= {bad!r}"):
            tm.row_bound({"text_max_rows": bad}, "text_max_rows")
    # The refit: only with refit_on_all_rows, and only up to refit_max_rows rows.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 3)), rng.normal(size=2000)
    p = {"objective": "regression", "verbosity": -1, "num_threads": 1}
    stopped = lgb.train(p, lgb.Dataset(X[:1800], y[:1800]), num_boost_round=3)
    assert tm.refit_booster(p, X, [], y, stopped, {"refit_on_all_rows": True, "refit_max_rows": 1999}) is stopped
    assert tm.refit_booster(p, X, [], y, stopped, {"refit_on_all_rows": False, "refit_max_rows": None}) is stopped
    refit = tm.refit_booster(p, X, [], y, stopped, {"refit_on_all_rows": True, "refit_max_rows": 2000})
    assert refit is not stopped and refit.current_iteration() == 3
