"""docker-compose.yml cannot run here (no Docker engine): check it parses, names every service, and sets
only environment keys that jobcast or Airflow actually read."""

from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.unit

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def all_env():
    env = {}
    for svc in COMPOSE["services"].values():
        env.update(svc.get("environment") or {})
    return env


def test_compose_defines_the_database_and_every_airflow_service():
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "spark-master", "spark-worker", "spark-connect"} <= set(COMPOSE["services"])
    assert all_env()["JOBCAST_SPARK_MASTER"] == "spark://spark-master:7077"  # configuration, not code
    for name, svc in COMPOSE["services"].items():
        assert "image" in svc, name
        if name != "postgres":
            assert svc["build"]["context"] == "." and svc["image"] == "jobcast:latest", name  # one image of the project
            assert "JOBCAST_CODE_VERSION" in svc["build"]["args"], name  # the commit its batches record
    assert (REPO / "Dockerfile").is_file()
    # Airflow's tasks are clients of the one Spark Connect server, through the spark_connect connection
    import json

    conn = json.loads(all_env()["AIRFLOW_CONN_JOBCAST_SPARK"])
    assert conn == {"conn_type": "spark_connect", "host": "spark-connect", "port": 15002}
    connect = COMPOSE["services"]["spark-connect"]
    assert connect["command"] == ["jobcast", "spark", "start", "--foreground"]
    assert connect["environment"]["JOBCAST_SPARK_CONNECT_PORT"] == str(conn["port"])


def test_every_jobcast_env_key_is_read_by_the_code():
    code = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    keys = [k for k in all_env() if k.startswith("JOBCAST_")]
    assert keys
    for key in keys:
        assert f'"{key}"' in code, f"{key} is set in docker-compose.yml but never read"


def test_every_airflow_env_key_is_a_real_airflow_option():
    import importlib.util

    # find_spec, not import: importing airflow would initialise an AIRFLOW_HOME as a side effect.
    pkg = Path(importlib.util.find_spec("airflow").submodule_search_locations[0])
    cfg = yaml.safe_load((pkg / "config_templates" / "config.yml").read_text())
    # and the OpenLineage provider's section, from its get_provider_info.py (run as a file: no Airflow import)
    import runpy

    info = runpy.run_path(str(pkg / "providers" / "openlineage" / "get_provider_info.py"))["get_provider_info"]()
    cfg.update(info["config"])
    for key in (k for k in all_env() if k.startswith("AIRFLOW__")):
        _, section, option = key.split("__", 2)
        assert option.lower() in cfg.get(section.lower(), {}).get("options", {}), key


def test_compose_files_it_mounts_exist():
    for svc in COMPOSE["services"].values():
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), src
