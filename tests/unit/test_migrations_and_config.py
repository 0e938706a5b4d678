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
