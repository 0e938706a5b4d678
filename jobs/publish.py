"""publish: load a validated prediction batch into the shared database and make it live atomically."""

from __future__ import annotations

import json
import logging

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.db.conn import connect
from jobcast.errors import InputDataError, PublishError
from jobcast.storage import dir_hash, partition, read_manifest

from jobs.validate import read_verdict, verdict_path

log = logging.getLogger(__name__)


def check_drift_verdict(settings, task: str, ds: str, preds, verdict: dict) -> None:
    """Every gate that applies ran and passed: the drift verdict of the same validation run and content."""
    again = f"run `jobcast validate --task {task} --date {ds}` again"
    if "drift" not in verdict:
        raise PublishError(f"{preds}: the verdict does not record the drift gate (validated by older jobcast code); {again}")
    if verdict["drift"] != "required":
        return
    drift = read_verdict(settings, f"{task}_drift", ds)
    if drift is None or drift.get("run_id") != verdict.get("run_id") or drift.get("content_version") != verdict["content_version"]:
        raise PublishError(f"{preds}: the drift gate did not complete in validation run {verdict.get('run_id')} (it errored "
                           f"or was stopped; {verdict_path(settings, f'{task}_drift', ds)} is "
                           f"{'missing' if drift is None else 'from run ' + str(drift.get('run_id'))}); nothing published; {again}")
    if not drift["success"]:
        raise PublishError(f"{preds}: the drift gate failed ({len(drift['failed'])} expectations); nothing published; "
                           f"report: {drift.get('report_path')}")


def check_features_verdict(settings, ds: str, preds, manifest: dict) -> None:
    """The features gate passed for exactly the features this batch was scored from."""
    feats = read_verdict(settings, "features", ds)
    again = f"run `jobcast validate --date {ds} --layer features`, then score and validate again"
    if feats is None:
        raise PublishError(f"{preds}: the features gate has not run for {ds} ({verdict_path(settings, 'features', ds)} "
                           f"missing); nothing published; {again}")
    if not feats["success"]:
        raise PublishError(f"{preds}: the features gate failed for {ds}; nothing published; report: {feats.get('report_path')}")
    scored_from = manifest.get("features_version")
    if not scored_from:
        raise PublishError(f"{preds}: its manifest does not say which features it was scored from; rescore it with "
                           f"`jobcast score --date {ds} --full`")
    if feats.get("content_version") != scored_from:
        raise PublishError(f"{preds}: scored from features {scored_from[:12]}, but the features gate passed "
                           f"{str(feats.get('content_version'))[:12]}; nothing published; {again}")


def run(ctx: RunContext, *, task: str = "salary", force: bool = False) -> StepResult:
    from jobcast.archive import archive_inputs
    from jobcast.publish.store import BatchInfo, publish

    settings = ctx.settings
    preds = partition(settings.data_dir, "predictions", task, date=ctx.ds)
    if not preds.is_dir():
        raise InputDataError(f"{preds}: no predictions for {ctx.ds}; run `jobcast score --task {task} --date {ctx.ds}` first")
    verdict = read_verdict(settings, task, ctx.ds)
    version = dir_hash(preds)
    # The gate: only predictions that passed validation, unchanged since, reach the web apps.
    if verdict is None:
        raise PublishError(f"{preds}: not validated ({verdict_path(settings, task, ctx.ds)} missing); "
                           f"run `jobcast validate --task {task} --date {ctx.ds}` first")
    if not verdict["success"]:
        raise PublishError(f"{preds}: validation failed ({len(verdict['failed'])} expectations); "
                           f"nothing published; report: {verdict['report_path']}")
    if verdict["content_version"] != version:
        raise PublishError(f"{preds}: predictions changed after validation (hash {version[:12]} != validated "
                           f"{verdict['content_version'][:12]}); validate again")
    check_drift_verdict(settings, task, ctx.ds, preds, verdict)
    manifest = read_manifest(preds)
    check_features_verdict(settings, ctx.ds, preds, manifest)
    with timed_step("publish", ctx, task) as res:
        # The day's raw snapshots and the model go to the DVC remote first: a live batch can always be rebuilt
        # (`jobcast reproduce`). A remote that cannot be reached fails the publish (retried as transient).
        lineage = {"code": manifest.get("code_version"), "features_version": manifest.get("features_version"),
                   "params": manifest.get("params"),
                   **archive_inputs(settings, task, ctx.ds, manifest.get("model_version", "unknown"))}
        out = publish(
            lambda: connect(settings, application_name="jobcast-publish"), preds,
            BatchInfo(task=task, logical_date=ctx.ds, model_version=manifest.get("model_version", "unknown"),
                      data_version=version, run_id=ctx.run_id, validation_success=True,
                      report_path=verdict.get("report_path"), lineage=lineage),
            force=force, keep=settings.param_number("publish.keep_batches", int),
        )
        log.info("%s batch %s for %s: %s", task, out["batch_id"], ctx.ds, out["message"])
        receipt = settings.reports_dir / "published" / task / f"dt={ctx.ds}.json"
        try:  # bookkeeping after the swap: a failure here is a warning, never a failed (and retried) publish
            receipt.parent.mkdir(parents=True, exist_ok=True)
            receipt.write_text(json.dumps({**out, "task": task, "logical_date": ctx.ds, "run_id": ctx.run_id}, indent=2),
                               encoding="utf-8")
        except OSError as exc:
            log.warning("%s batch %s is live, but its receipt %s could not be written: %s", task, out["batch_id"], receipt, exc)
            out.setdefault("warnings", []).append(f"receipt not written: {exc}")
        res.rows = out["rows"]
        res.metrics.update(warnings=out.get("warnings", []))
        res.ids.update(batch_id=out["batch_id"], status=out["status"], live_batch_id=out["live_batch_id"],
                       model_version=manifest.get("model_version"))
        res.metrics.update(swap_seconds=out["swap_seconds"])
    return res
