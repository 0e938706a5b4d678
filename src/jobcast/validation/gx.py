"""Run a suite from expectations/<name>.json on a DataFrame through its GX 1.x checkpoint
(expectations/checkpoints/<name>.json), build Data Docs, fail loudly.

GX silently drops invalid expectation configs and its Airflow operator does not fail on failed
expectations, so we build each expectation ourselves (naming a bad one) and check the result here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobcast.errors import ConfigError
from jobcast.validation.datadocs import localize_site

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    report_path: str | None
    evaluated: int
    failed: list[dict[str, Any]] = field(default_factory=list)

    def failure_summary(self) -> str:
        parts = []
        for f in self.failed:
            kw = {k: v for k, v in f["kwargs"].items()
                  if k in ("column", "column_A", "column_B", "value", "min_value", "max_value", "column_set")}
            obs, n, examples = f.get("observed"), f.get("unexpected_count"), f.get("examples")
            parts.append(f"{f['type']}({', '.join(f'{k}={v}' for k, v in kw.items())})"
                         + (f" observed={obs}" if obs is not None else "")
                         + (f" unexpected={n}" if n else "") + (f" e.g. {examples}" if n and examples else ""))
        return "; ".join(parts)


def _plain(value):
    """numpy scalars and tuples (GX's unexpected values) as plain JSON-able Python."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _examples(values, n: int = 3) -> list:
    """Up to n distinct unexpected values, for messages that say e.g. which job_id or label was wrong."""
    out: list = []
    for v in values or []:
        v = _plain(v)
        if v not in out:
            out.append(v)
        if len(out) == n:
            break
    return out


# Runtime parameters GX can evaluate but not render: the KL-divergence renderer reads partition_object's
# bins and weights from the expectation's config and fails the Data Docs block on a {"$PARAMETER": ...}
# reference. These are written into the config itself.
INLINE_PARAMETERS = ("partition_object",)


def load_suite(path: Path, parameters: dict[str, Any] | None = None):
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read suite: {exc}") from exc
    expectations = []
    for i, e in enumerate(spec.get("expectations", [])):
        kwargs = dict(e.get("kwargs", {}))
        for key in INLINE_PARAMETERS:
            ref = kwargs.get(key)
            if isinstance(ref, dict) and set(ref) == {"$PARAMETER"}:
                if ref["$PARAMETER"] not in (parameters or {}):
                    raise ConfigError(f"{path}: expectation #{i} ({e.get('type')}) needs runtime parameter {ref['$PARAMETER']!r}")
                kwargs[key] = parameters[ref["$PARAMETER"]]
        try:
            expectations.append(ExpectationConfiguration(type=e["type"], kwargs=kwargs, meta=e.get("meta")).to_domain_obj())
        except Exception as exc:
            raise ConfigError(f"{path}: expectation #{i} ({e.get('type')}) is invalid: {exc}") from exc
    if not expectations:
        raise ConfigError(f"{path}: suite has no expectations")
    return gx.ExpectationSuite(name=spec["name"], expectations=expectations, notes=spec.get("notes"))


def load_checkpoint_spec(suite_path: Path, suite_name: str) -> dict[str, Any]:
    """The checkpoint definition kept next to the suite, in GX's own serialised form: which validation
    definitions it runs (by name: here the suite's own, on the DataFrame given at run time), its actions
    (Data Docs; add e.g. a Slack action here) and result format."""
    path = suite_path.parent / "checkpoints" / f"{suite_name}.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint of suite {suite_name!r}: {exc}") from exc
    names = [v.get("name") for v in spec.get("validation_definitions", []) if isinstance(v, dict)]
    if spec.get("name") != suite_name or names != [suite_name]:
        raise ConfigError(f"{path}: expected checkpoint {suite_name!r} running validation definition "
                          f"[{suite_name!r}], found {spec.get('name')!r} running {names}")
    return spec


def cap_history(gx_root: Path, suite: str, keep: int) -> int:
    """Keep the newest `keep` validation runs of a suite (stored results and their Data Docs pages).

    Data Docs render every stored result into the index; with thousands of runs it becomes unusable, so the
    history is capped before each run and the index rebuilt from what remains."""
    import shutil

    removed = 0
    for base in (gx_root / "uncommitted" / "validations" / suite, gx_root / "uncommitted" / "data_docs" / "local_site" / "validations" / suite):
        if not base.is_dir():
            continue
        runs = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in runs[max(keep - 1, 0):]:  # room for the run about to happen
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def _file_path(url: str | None) -> str | None:
    """The local path of a Data Docs file:// URL (None for a site that is not on this filesystem)."""
    from urllib.parse import unquote

    return unquote(url[len("file://"):]) if url and url.startswith("file://") else None


def _local_sites(context) -> list[Path]:
    """The folders of the context's filesystem Data Docs sites (their index pages' parents)."""
    paths = (_file_path(u.get("site_url")) for u in context.get_docs_sites_urls(only_if_exists=False))
    return [Path(p).parent for p in paths if p]


def validate_dataframe(df, suite_path: Path, reports_dir: Path, *, batch_name: str, parameters: dict[str, Any],
                       run_name: str, keep_history: int = 30) -> ValidationOutcome:
    import great_expectations as gx

    suite = load_suite(suite_path, parameters)
    spec = load_checkpoint_spec(suite_path, suite.name)  # both files checked before the GX store is touched
    reports_dir.mkdir(parents=True, exist_ok=True)
    # One validation at a time per GX project: its stores are plain files that GX rewrites in place, and a
    # backfill's runs and the daily run validate side by side (a half-written suite file would fail a run).
    with (reports_dir / ".gx.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_checkpoint(gx, df, suite, spec, suite_path, reports_dir, batch_name=batch_name,
                               parameters=parameters, run_name=run_name, keep_history=keep_history)


def _run_checkpoint(gx, df, suite, spec: dict[str, Any], suite_path: Path, reports_dir: Path, *, batch_name: str,
                    parameters: dict[str, Any], run_name: str, keep_history: int) -> ValidationOutcome:
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="file", project_root_dir=str(reports_dir))
    bars = context.variables.progress_bars
    if (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", True)) is not False:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # they flood task logs
        context.variables.save()
    # A Spark DataFrame is validated where it lives (GX's Spark datasource: each expectation's metrics are Spark
    # aggregations, nothing is collected); a pandas one through the pandas datasource.
    spark = type(df).__module__.startswith("pyspark")
    # persist=False: GX would cache the frame, and Spark's cache matches by plan, so a later validation of the
    # same path (a re-run after the files changed) would see the cached, stale rows.
    source = (context.data_sources.add_or_update_spark("jobcast_spark", persist=False) if spark
              else context.data_sources.add_or_update_pandas("jobcast"))
    asset_name = suite.name
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    started = time.time()
    if cap_history(reports_dir / "gx", suite.name, keep_history):
        context.build_data_docs()  # drop pruned runs from the index
    suite = context.suites.add_or_update(suite)
    definition = gx.ValidationDefinition(name=suite.name, data=batch_def, suite=suite)
    try:
        context.validation_definitions.add_or_update(definition)
    except Exception:  # noqa: BLE001 - the stored one points at the other engine's asset, which GX cannot load
        store = context.validation_definition_store
        store.remove_key(store.get_key(name=suite.name, id=None))
        context.validation_definitions.add(definition)
    try:  # the validation definition is looked up by name in the context's store, where it was just saved
        checkpoint = gx.Checkpoint.parse_obj(spec)
    except Exception as exc:
        raise ConfigError(f"{suite_path.parent / 'checkpoints' / (suite.name + '.json')}: invalid checkpoint: {exc}") from exc
    checkpoint = context.checkpoints.add_or_update(checkpoint)
    result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters,
                            run_id=RunIdentifier(run_name=f"{run_name}__{batch_name}".replace("/", "_").replace(":", "_")))
    for site in _local_sites(context):
        localize_site(site, since=started)  # offline pages: CDN assets served from the site folder
    failed, evaluated, report = [], 0, None
    for identifier, vr in result.run_results.items():
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
        report = next((u["site_url"] for u in urls if u.get("site_url")), report)
        for r in vr.results:
            evaluated += 1
            if not r.success:
                cfg = r.expectation_config
                res = r.result or {}
                failed.append({"type": cfg.type, "kwargs": dict(cfg.kwargs), "observed": res.get("observed_value"),
                               "unexpected_count": res.get("unexpected_count"),
                               "examples": _examples(res.get("partial_unexpected_list"))})
    report = _file_path(report) or report
    return ValidationOutcome(suite=suite.name, success=bool(result.success), report_path=report, evaluated=evaluated, failed=failed)
