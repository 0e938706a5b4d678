# The two entry points of the README. Each installs what it needs first (scripts/bootstrap).
.PHONY: demo test bootstrap
export GX_ANALYTICS_ENABLED := False
export DVC_NO_ANALYTICS := 1

bootstrap:
	@scripts/bootstrap

# The main job end to end on embedded defaults: project-local PostgreSQL, Spark local[*], Airflow on SQLite.
demo: bootstrap
	.venv/bin/jobcast demo

# The whole test suite (unit, integration, e2e) against real PostgreSQL, Spark, GX, Airflow and DVC.
test:
	@scripts/bootstrap --browser
	.venv/bin/python -m pytest -q
