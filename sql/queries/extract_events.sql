-- The logical day's view/apply events.
select event_id, job_id, session_id, event_type, occurred_at
from {source}.events
where occurred_at >= %(day_start)s
  and occurred_at < %(day_end)s
order by event_id
