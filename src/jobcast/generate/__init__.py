"""Deterministic demo data: plays the web app (app.*) and records the truth (truth.*)."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any


def generate(settings, *, postings: int | None = None, days: int | None = None, seed: int | None = None,
             start_date: str | None = None, chunk_postings: int = 100_000, truth: bool = True) -> dict[str, Any]:
    """Fill app.* (and truth.*) of the shared DB with a generated board: params.yaml `generate` unless given.
    Writes data/generated.json (the board's recipe and row counts, a DVC output) and returns it."""
    from jobcast.db.conn import connect
    from jobcast.generate.core import GenerateSpec, load

    p = settings.param("generate")
    spec = GenerateSpec(
        postings=postings or int(p["postings"]), days=days or int(p["days"]), seed=seed if seed is not None else int(p["seed"]),
        start_date=dt.date.fromisoformat(start_date or str(p["start_date"])), timezone=settings.param("run.timezone"),
    )
    t0 = time.perf_counter()
    conn = connect(settings, application_name="jobcast-generate")
    try:
        counts = load(conn, spec, settings.root / "sql" / "demo" / "app_schema.sql", chunk_postings=chunk_postings, truth=truth)
    finally:
        conn.close()
    manifest = {"postings": spec.postings, "days": spec.days, "seed": spec.seed, "start_date": spec.start_date.isoformat(),
                "end_date": spec.end_date.isoformat(), "rows": counts, "seconds": round(time.perf_counter() - t0, 1)}
    out = settings.data_dir / "generated.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: v for k, v in manifest.items() if k != "seconds"}, indent=2), encoding="utf-8")
    return manifest
