"""train: fit a model on a window of features, record it in the registry, promote it if it passes the gate."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import ConfigError, InputDataError, ModelError
from jobcast.features.text import TERMS
from jobcast import tasks
from jobcast.models import registry, task_models
from jobcast.storage import atomic_dir, dvc_hash, partition, read_manifest, scratch_path
from jobcast.tasks.base import SHARED_TRAIN_PARAMS

from jobs.extract import provenance

log = logging.getLogger(__name__)

MIN_HOLDOUT = 30
MIN_TRAIN = 200
HOLDOUT = task_models.HOLDOUT
SAMPLE_WEIGHT = task_models.SAMPLE_WEIGHT  # 1 / the kept fraction of the row's part (training or holdout)
PART = "_jc_part"  # the part (train, holdout) of a collected row


def window_partitions(ctx: RunContext, window_days: int) -> tuple[list[Path], dict[str, str], dict]:
    """The window's feature partitions (checked: present, built by this feature code, one text setting), each
    partition's DVC hash, and the text setting they share."""
    settings = ctx.settings
    days = [ctx.logical_date - dt.timedelta(days=i) for i in reversed(range(window_days))]
    paths = [partition(settings.data_dir, "features", date=d.isoformat()) for d in days]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise InputDataError(f"training window of {window_days} days ending {ctx.ds}: missing feature partitions "
                             f"{missing}; run `jobcast window --date {ctx.ds} --days {window_days}` first")
    from jobcast.features.transforms import FEATURES_VERSION

    manifests = {p: read_manifest(p) for p in paths}
    stale = [str(p) for p, m in manifests.items() if m.get("features_version") != FEATURES_VERSION]
    if stale:
        raise InputDataError(f"training window ending {ctx.ds}: {len(stale)} feature partitions were built by older feature "
                             f"code (e.g. {stale[0]}); expected features_version {FEATURES_VERSION}; rebuild them with "
                             f"`jobcast window --date {ctx.ds} --days {window_days}`")
    texts = {json.dumps(m.get("text"), sort_keys=True) for m in manifests.values()}
    if len(texts) != 1:
        raise InputDataError(f"training window ending {ctx.ds}: partitions hash text differently {sorted(texts)}; "
                             f"rebuild them with `jobcast window --date {ctx.ds} --days {window_days} --force`")
    return paths, {p.name: dvc_hash(p) for p in paths}, json.loads(texts.pop())


def window_frame(ctx: RunContext, task: str, paths: list[Path], holdout_days: int, *, labelled: bool = True):
    """Spark frame of the task's rows of the window (its declaration's window_rows) with a boolean HOLDOUT
    column: the time-based holdout of the last holdout_days days."""
    df = ctx.spark().read.parquet(*[str(p) for p in paths])
    days = [ctx.logical_date - dt.timedelta(days=i) for i in reversed(range(len(paths)))]
    first_holdout_day = ctx.logical_date - dt.timedelta(days=holdout_days - 1)
    return tasks.get(task).window_rows(ctx, df, days, first_holdout_day, labelled=labelled)


@dataclass
class TrainingData:
    train: pd.DataFrame
    holdout: pd.DataFrame
    versions: dict[str, str]  # feature partition -> DVC hash
    text: dict                # the partitions' features.text
    sampling: dict            # per part: rows in the window, rows kept, the kept fraction


def _collect(rows, path: Path, by: str):
    """Writes the rows as Parquet under path and returns a function that reads the rows of one value of column
    `by` as an Arrow table, batch by batch (without `by`; empty when it has none). Spark writes task by task:
    unlike toArrow(), which holds every task's serialised result in the JVM heap at once, the heap needed does
    not grow with the sample (a 2M-row cvr sample ran a 4 GB heap out of memory that way)."""
    import pyarrow.dataset as ds

    rows.write.mode("overwrite").parquet(str(path))
    schema = rows.limit(0).toArrow().schema  # Spark's own Arrow types, as toArrow() gave
    columns = [c for c in schema.names if c != by]
    files = sorted(str(f) for f in path.glob("*.parquet"))  # none when there are no rows
    # Small batches, little read-ahead: a batch holds its rows' terms, and the other part's rows are read and dropped.
    return lambda value: (ds.dataset(files, schema=schema).to_table(columns=columns, filter=ds.field(by) == value,
                                                                    batch_size=8192, batch_readahead=2, fragment_readahead=1)
                          if files else schema.empty_table().select(columns))


def load_training(ctx: RunContext, task: str, window_days: int, holdout_days: int, *, max_rows: int | None = None,
                  max_holdout_rows: int | None = None, seed: int = 7) -> TrainingData:
    """The task's training and holdout rows, built in Spark and sampled there to at most max_rows /
    max_holdout_rows, then collected as Arrow: the driver holds what the model needs, whatever the window's size.

    The sample is a Bernoulli draw on a hash of (job_id, logical_date, seed): the same rows on every run and
    every cluster layout. Each kept row carries SAMPLE_WEIGHT = 1 / fraction, so weighted sums (cvr's
    views-weighted loss) stay unbiased. cvr's training rows keep the text terms on one row per posting (its
    newest), the only row its per-posting text model reads: repeating them on every (posting, day) row would
    multiply the driver's memory by the days in the window (every "posting_day" task). For the same reason a
    posting_day task's training rows are drawn by posting, on a hash of (job_id, seed), all of a drawn posting's
    days together: drawn by (posting, day), a capped sample of a big board touched nearly every posting, and the
    text model's rows (one per posting) grew with the board instead of with the cap."""
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    from jobcast.tasks.base import newest_days

    paths, versions, text = window_partitions(ctx, window_days)
    # The rows are built and drawn without the text terms, which are most of a feature row's bytes: Spark prunes
    # the column from every scan, join and cache of the draw. Only the kept rows' terms are then picked from the
    # partitions by a broadcast semi-join on (job_id, logical_date), so no stage shuffles or caches the terms of a
    # row it does not keep. (Carried through cvr's join with the day's events, they made a shuffle and a disk
    # cache of every (posting, day) row's terms: about 60 GB at 1M open postings.)
    whole = window_frame(ctx, task, paths, holdout_days)
    columns = [c for c in whole.columns if c != HOLDOUT] + [SAMPLE_WEIGHT]  # collected in the window's order
    # Cached once (spilling to disk when the heap is short): the counts and both parts' draws read it.
    frame = whole.drop(TERMS).persist(StorageLevel.MEMORY_AND_DISK)
    per_posting = tasks.get(task).unit == "posting_day"
    staging = scratch_path(ctx.settings.data_dir, f"train-{task}")
    try:
        counts = {bool(r[HOLDOUT]): int(r["count"]) for r in frame.groupBy(HOLDOUT).count().collect()}
        kept, wanted, sampling = [], [], {}
        for part, cap in (("train", max_rows), ("holdout", max_holdout_rows)):
            n = counts.get(part == "holdout", 0)
            fraction = 1.0 if not cap or n <= cap else cap / n
            rows = frame.where(F.col(HOLDOUT) == (part == "holdout")).drop(HOLDOUT)
            by_posting = per_posting and part == "train"
            if fraction < 1.0:
                keys = ["job_id"] if by_posting else ["job_id", "logical_date"]
                u = F.pmod(F.xxhash64(*keys, F.lit(seed)), F.lit(1 << 31)) / float(1 << 31)
                rows = rows.where(u < fraction)
            kept.append(rows.withColumn(SAMPLE_WEIGHT, F.lit(1.0 / fraction)).withColumn(PART, F.lit(part)))
            # The rows whose terms are kept: cvr's training rows keep them on each posting's newest sampled row.
            wanted.append(newest_days(rows) if by_posting else rows.select("job_id", "logical_date"))
            sampling[part] = {"window_rows": n, "rows": None, "fraction": fraction, "cap": cap}
        keys = functools.reduce(DataFrame.unionByName, wanted).distinct()
        terms = (ctx.spark().read.parquet(*[str(p) for p in paths]).select("job_id", "logical_date", TERMS)
                 .join(F.broadcast(keys), ["job_id", "logical_date"], "left_semi"))
        # Both parts in one join and one write.
        rows = (functools.reduce(DataFrame.unionByName, kept).join(terms, ["job_id", "logical_date"], "left")
                .select(*columns, PART))
        read = _collect(rows, staging, PART)
        out = {}
        for part in sampling:
            table = read(part)
            pdf = table.to_pandas() if table.num_rows else table.schema.empty_table().to_pandas()
            del table
            # Spark's partitioning is not an order: sort, so the same rows always train the same model.
            out[part] = pdf.sort_values(["logical_date", "job_id"], kind="stable", ignore_index=True)
            sampling[part]["rows"] = int(len(pdf))
    finally:
        frame.unpersist()
        shutil.rmtree(staging, ignore_errors=True)
    return TrainingData(out["train"], out["holdout"], versions, text, sampling)


def run(ctx: RunContext, *, task: str = "salary") -> StepResult:
    from jobcast.models.matrix import FeatureSchema
    from jobcast.models.profile import profile

    declared = tasks.get(task)
    task = declared.name
    settings = ctx.settings
    why_not = declared.trainable(ctx)
    if why_not:
        raise InputDataError(f"train {task} {ctx.ds}: nothing to learn from: {why_not}")
    params = declared.train_params(settings)
    for key in SHARED_TRAIN_PARAMS:  # checked before minutes of loading, not when a fit reads them
        task_models.row_bound(params, key)
    window_days = int(params.get("window_days", settings.param("train.window_days")))
    holdout_days = settings.param_number("train.holdout_days", int)
    tolerance = settings.param_number("train.gate_tolerance", float)

    with timed_step("train", ctx, task) as res:
        t0 = time.monotonic()
        data = load_training(ctx, task, window_days, holdout_days, max_rows=_cap(params.get("max_rows"), f"{declared.params_key}.max_rows"),
                             max_holdout_rows=_cap(settings.param("train.max_holdout_rows"), "train.max_holdout_rows"),
                             seed=int(params.get("seed", 7)))
        train_df, holdout, versions, text = data.train, data.holdout, data.versions, data.text
        log.info("%s: %d training and %d holdout rows loaded in %.1fs", task, len(train_df), len(holdout),
                 time.monotonic() - t0)
        for part, s in data.sampling.items():
            if s["fraction"] < 1:
                log.info("%s %s rows: %d of %d in the window (cap %d, fraction %.4f)", task, part, s["rows"], s["window_rows"],
                         s["cap"], s["fraction"])
        if len(train_df) < MIN_TRAIN or len(holdout) < MIN_HOLDOUT:
            raise InputDataError(
                f"{task} training window of {window_days} days ending {ctx.ds}: {len(train_df)} labelled rows for training "
                f"and {len(holdout)} in the {holdout_days}-day holdout; expected >= {MIN_TRAIN} and >= {MIN_HOLDOUT} "
                "(more data or a longer train.window_days)")

        schema = FeatureSchema.fit(train_df, text, task)
        inputs = profile(train_df, list(schema.numeric), list(schema.categorical))  # the features gate compares with it
        # How many text-model fits run at once is not a model param (any number gives the same model), so it
        # stays out of the version id.
        boosters, extras = declared.fit(train_df, schema, {**params, "text_workers": _workers(settings)})
        # The training data version: one md5 over the DVC hashes of the window's partitions (each kept below).
        data_version = hashlib.md5(json.dumps(versions, sort_keys=True).encode()).hexdigest()
        code_version = registry.code_version(settings.root)
        # Same inputs, params and code (commit plus the training code's bytes, so a dirty tree counts) -> same id.
        code_files = [*sorted(Path(task_models.__file__).parent.glob("*.py")), Path(inspect.getfile(type(declared))),
                      Path(__file__)]
        code_digest = hashlib.md5(b"".join(f.read_bytes() for f in code_files)).hexdigest()
        version = f"{ctx.logical_date:%Y%m%d}-" + hashlib.sha1(
            json.dumps([task, data_version, params, text, code_version, code_digest], sort_keys=True).encode()).hexdigest()[:8]

        final = registry.version_dir(settings, task, version)
        with atomic_dir(final) as tmp:
            tmp.mkdir(parents=True)
            terms = _term_names(ctx, extras, text)  # before save: it pops the text models out of extras
            extras = task_models.save(tmp, boosters, schema, extras)
            (tmp / "terms.json").write_text(json.dumps({str(k): v for k, v in sorted(terms.items())}, ensure_ascii=False),
                                            encoding="utf-8")
            metrics = {**task_models.evaluate(declared, task_models.Predictor.load(declared, tmp), holdout),
                       **declared.baseline(train_df, holdout),
                       "n_train": int(len(train_df)), "n_holdout": int(len(holdout)),
                       "best_iteration": {k: int(b.best_iteration or b.current_iteration()) for k, b in boosters.items()}}
            meta = {
                "task": task, "version": version, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "logical_date": ctx.ds, "window_days": window_days, "holdout_days": holdout_days,
                "features": schema.columns, "params": params, "metrics": metrics, **extras, "profile": inputs,
                "sampling": data.sampling,
                # Which window days are the board as it was, and which were rebuilt later from edited rows.
                "snapshots": provenance(settings, [name.removeprefix("dt=") for name in versions]),
                "data_version": data_version, "feature_partitions": versions, "code_version": code_version,
                "run_id": ctx.run_id,
                "files": registry.file_digests(tmp),  # checked before every load (registry.verify_files)
            }
            (tmp / registry.METADATA).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")

        promoted, reason = gate(ctx, task, version, holdout, metrics, tolerance)
        if promoted:
            registry.set_champion(settings, task, version, reason)
        log.info("%s model %s: %s", task, version, reason)
        _write_metrics(settings, task, version, metrics, promoted, reason)
        res.rows = len(train_df)
        res.paths["model"] = str(final)
        res.ids.update(model_version=version, promoted=promoted)
        res.metrics.update({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
        res.metrics["reason"] = reason
        res.metrics["window_days"] = window_days  # the feature partitions it read (jobcast.lineage)
    return res


def _term_names(ctx: RunContext, extras: dict, text: dict) -> dict[int, str]:
    """The n-grams behind the term ids the model weighs most (for the reasons of its predictions), from the logical
    date's postings (jobcast.models.reasons.term_dictionary)."""
    from jobcast.features.text import TextSpec
    from jobcast.models.reasons import term_dictionary, wanted_terms

    models = extras.get("text_models", {})
    ids = wanted_terms(models, models.get("__terms__", []))
    if not ids:
        return {}
    t0 = time.monotonic()
    postings = partition(ctx.settings.data_dir, "raw", "job_postings", date=ctx.ds)
    names = term_dictionary(ctx.spark(), str(postings), TextSpec.from_params(text), ids)
    log.info("term names: %d of %d ids named from %s in %.1fs", len(names), len(ids), postings, time.monotonic() - t0)
    return names


def _workers(settings) -> int | None:
    """train.text_workers: text-model fits at once, an integer >= 1, or null for min(cores, folds + 1)."""
    value = settings.param("train.text_workers")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"params.yaml train.text_workers={value!r}: expected an integer >= 1, or null for one per core")
    return value


def _cap(value, key: str) -> int | None:
    """A row cap from params: an integer of at least MIN_TRAIN, or null for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_TRAIN:
        raise ConfigError(f"params.yaml {key}={value!r}: expected an integer >= {MIN_TRAIN}, or null for no cap")
    return value


def gate(ctx: RunContext, task: str, version: str, holdout: pd.DataFrame, metrics: dict, tolerance: float) -> tuple[bool, str]:
    """Promote unless the champion does better on this same holdout by more than the (relative) tolerance."""
    metric, higher_better = tasks.get(task).gate_metric
    new = metrics[metric]
    champ = registry.champion(ctx.settings, task)
    if champ is None:
        return True, f"promoted: no champion yet (holdout {metric} {new:.4g})"
    if champ["version"] == version:
        return True, "promoted: same version as the champion (identical data, params and code)"
    try:
        champ_model = task_models.Predictor.load(task, registry.version_dir(ctx.settings, task, champ["version"]))
        champ_model.schema.check(list(holdout.columns), None, f"champion {champ['version']}")
        old = task_models.evaluate(task, champ_model, holdout)[metric]
    except ModelError as exc:
        return True, f"promoted: champion {champ['version']} cannot score these features ({exc})"
    allowed = old * (1 - tolerance) if higher_better else old * (1 + tolerance)
    ok = new >= allowed if higher_better else new <= allowed
    compare = f"holdout {metric} {new:.4g} vs champion {champ['version']} {old:.4g} (tolerance {tolerance:.0%})"
    if ok:
        return True, f"promoted: {compare}"
    return False, f"kept champion {champ['version']}: new model is worse by more than the tolerance: {compare}"


def _write_metrics(settings, task: str, version: str, metrics: dict, promoted: bool, reason: str) -> None:
    """DVC metrics of the last training run: the scalars (curves and matrices are in the model's metadata)."""
    out = settings.metrics_dir / "train" / f"{task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    out.write_text(json.dumps({"version": version, "promoted": promoted, **scalars}, indent=2), encoding="utf-8")
