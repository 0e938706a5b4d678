"""Human-readable views of the shared database: the live batches and the batch registry."""

from __future__ import annotations

from jobcast.config import Settings
from jobcast.db.conn import connect
from jobcast.tasks import get as spec


def live_summary(settings: Settings, tasks: tuple[str, ...]) -> list[str]:
    """One line per task: view, rows, live batch and, when the generator's truth exists, quality against it."""
    lines = []
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            for task in tasks:
                declared = spec(task)
                view = declared.qualified_view
                cur.execute(f"select count(*), min(batch_id), max(batch_id), min(prediction_date)::text from {view}")
                rows, bmin, bmax, pdate = cur.fetchone()
                line = f"{view}: rows={rows} batch_id={bmax} prediction_date={pdate}"
                if bmin != bmax:
                    line += f" (MIXED batches {bmin}..{bmax}!)"
                q = declared.quality  # against the generator's truth: schema truth exists only on a generated board
                if q is None:
                    lines.append(line)
                    continue
                cur.execute("select bool_and(to_regclass(t) is not null) from unnest(%s::text[]) t", (list(q.needs),))
                if rows and cur.fetchone()[0]:
                    cur.execute(q.sql.format(view=view))
                    value = cur.fetchone()[0]
                    line += f" {q.label}={q.fmt.format(value=value, currency=settings.param('board.currency')) if value is not None else 'n/a (no matching truth rows)'}"
                lines.append(line)
    finally:
        conn.close()
    return lines


def batches_table(settings: Settings, task: str | None, limit: int) -> str:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """select b.batch_id, b.task, b.logical_date::text, b.status, coalesce(b.row_count, 0), b.model_version,
                          to_char(b.created_at, 'YYYY-MM-DD HH24:MI:SS'), c.batch_id is not null, coalesce(b.message, '')
                   from predictions.batches b left join jobcast_internal.current_batch c using (batch_id)
                   where %(task)s::text is null or b.task = %(task)s
                   order by b.batch_id desc limit %(limit)s""", {"task": task, "limit": limit})
            rows = cur.fetchall()
    finally:
        conn.close()
    head = f"{'batch':>6} {'task':<8} {'date':<10} {'status':<11} {'rows':>8} {'model':<18} {'created':<19} live"
    out = [head]
    for r in rows:
        out.append(f"{r[0]:>6} {r[1]:<8} {r[2]:<10} {r[3]:<11} {r[4]:>8} {r[5]:<18} {r[6]:<19} {'*' if r[7] else ''} {r[8]}".rstrip())
    return "\n".join(out)
