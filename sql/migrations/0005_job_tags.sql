-- The fourth prediction: job-characteristics tags (jobcast.tasks.job_tags), stored and served like the others
-- (one partition per batch, the live one chosen by jobcast_internal.current_batch).
create table jobcast_internal.job_tags_rows (
    batch_id      bigint not null,
    job_id        bigint not null,
    tags          jsonb not null,
    probabilities jsonb not null,
    constraint job_tags_rows_tags_array check (jsonb_typeof(tags) = 'array'),
    constraint job_tags_rows_probabilities_object check (jsonb_typeof(probabilities) = 'object')
) partition by list (batch_id);
create unique index job_tags_rows_batch_job on jobcast_internal.job_tags_rows (batch_id, job_id);

create view predictions.job_tags as
select r.job_id,
       r.tags,
       r.probabilities,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date
from jobcast_internal.job_tags_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'job_tags');

grant select on predictions.job_tags to jobcast_reader;

comment on view predictions.job_tags is 'Predicted job-characteristics tags per active job posting (未経験歓迎, 週休2日制, 在宅勤務可, ...), from the live job_tags batch. Refreshed daily.';
comment on column predictions.job_tags.job_id is 'app.job_postings.job_id; unique in this view.';
comment on column predictions.job_tags.tags is 'The tags the posting has by the model, most likely first: [{"tag": "未経験歓迎", "probability": 0.93}, ...]; every tag whose probability reaches the model''s threshold (chosen for the best expected F1); [] when none does.';
comment on column predictions.job_tags.probabilities is 'The probability that the posting has each tag the model knows, e.g. {"未経験歓迎": 0.93, "在宅勤務可": 0.04, ...}: calibrated against the true tags, not against what employers ticked (they tick incompletely).';
comment on column predictions.job_tags.batch_id is 'predictions.batches.batch_id of the batch this row comes from.';
comment on column predictions.job_tags.model_version is 'Version of the model that produced the batch (models/job_tags/<version>/).';
comment on column predictions.job_tags.prediction_date is 'Logical date (Asia/Tokyo) the batch predicts for.';
