-- The public contract (schema predictions: views + batch registry) and the storage behind it
-- (schema jobcast_internal: one partition per batch, a one-row-per-task pointer to the live batch).
-- Publishing a batch = load + index a standalone table, ATTACH it, then a one-row UPDATE of the
-- pointer. Readers never wait on DDL of anything they read, and never see a mix of two batches.

create schema if not exists predictions;
create schema if not exists jobcast_internal;

create table predictions.batches (
    batch_id           bigint generated always as identity primary key,
    task               text not null check (task in ('salary', 'category', 'cvr')),
    logical_date       date not null,
    model_version      text not null,
    data_version       text,
    row_count          bigint,
    status             text not null default 'loading'
                       check (status in ('loading', 'validated', 'published', 'superseded', 'rolled_back', 'failed')),
    validation_success boolean,
    report_path        text,
    run_id             text,
    message            text,
    created_at         timestamptz not null default now(),
    published_at       timestamptz,
    updated_at         timestamptz not null default now()
);
create index batches_task_date on predictions.batches (task, logical_date desc, batch_id desc);

create table jobcast_internal.current_batch (
    task        text primary key check (task in ('salary', 'category', 'cvr')),
    batch_id    bigint not null references predictions.batches (batch_id),
    switched_at timestamptz not null default now()
);

create table jobcast_internal.salary_rows (
    batch_id   bigint not null,
    job_id     bigint not null,
    salary_p50 double precision not null
) partition by list (batch_id);
create unique index salary_rows_batch_job on jobcast_internal.salary_rows (batch_id, job_id);

-- The live batch is resolved by an initplan, so runtime partition pruning reads only its partition.
create view predictions.job_salary as
select r.job_id,
       r.salary_p50,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date
from jobcast_internal.salary_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'salary');

comment on schema predictions is 'jobcast predictions for web apps: read the job_* views and batches; everything else is internal.';
comment on table predictions.batches is 'One row per prediction batch (task, logical date): its lineage, validation result and publish status.';
comment on column predictions.batches.status is 'loading -> validated -> published (live) -> superseded | rolled_back; failed when a load or check failed.';
comment on view predictions.job_salary is 'Estimated annual salary (JPY) per active job posting, from the live salary batch. Refreshed daily.';
comment on column predictions.job_salary.job_id is 'app.job_postings.job_id; unique in this view.';
comment on column predictions.job_salary.salary_p50 is 'Median estimate of the annual salary in JPY (full-time equivalent midpoint of the range).';
comment on column predictions.job_salary.batch_id is 'predictions.batches.batch_id of the batch this row comes from.';
comment on column predictions.job_salary.model_version is 'Version of the model that produced the batch (models/salary/<version>/).';
comment on column predictions.job_salary.prediction_date is 'Logical date (Asia/Tokyo) the batch predicts for.';
