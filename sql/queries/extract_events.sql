-- View/apply events from the start of the feature lookback window to the end of the logical day.
-- Features use only the events before the logical day; the day's own events are the CVR labels.
select event_id, job_id, session_id, event_type, occurred_at
from {source}.events
where occurred_at >= %(events_since)s
  and occurred_at < %(day_end)s
order by event_id
