-- Three tasks served: salary gains an interval (p10/p90 next to p50); category and cvr get the same storage
-- and view shape as salary (one partition per batch, the live one chosen by jobcast_internal.current_batch).
-- Names here are mirrored in src/jobcast/tasks.py (a test checks they agree).

-- Salary: p10 and p90. Batches loaded before this migration hold only p50 and cannot be recomputed, so
-- the parent's new columns are nullable (ADD COLUMN is then a catalog-only change, no partition rewrite)
-- and those batches show NULL p10/p90 when live (including after a rollback to one). Every batch published
-- from now on has all three: publish sets NOT NULL on each prediction column of the batch's own table
-- before COPY (a partition may be stricter than its parent), and the GX suite predictions_salary checks it
-- first. The order p10 <= p50 <= p90 is a table invariant (NULLs pass it, so old batches satisfy it).
alter table jobcast_internal.salary_rows
    add column salary_p10 double precision,
    add column salary_p90 double precision;
alter table jobcast_internal.salary_rows
    add constraint salary_rows_quantiles_ordered check (salary_p10 <= salary_p50 and salary_p50 <= salary_p90);

-- The view's columns change in the middle, which CREATE OR REPLACE cannot do: drop and recreate in this
-- transaction (readers of the view wait for the commit; nothing else may depend on it, so no CASCADE).
drop view predictions.job_salary;
create view predictions.job_salary as
select r.job_id,
       r.salary_p10,
       r.salary_p50,
       r.salary_p90,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date
from jobcast_internal.salary_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'salary');

-- Category: the most likely category, its probability, and the three most likely as JSON.
create table jobcast_internal.category_rows (
    batch_id    bigint not null,
    job_id      bigint not null,
    category    text not null,
    probability double precision not null,
    top3        jsonb not null,
    constraint category_rows_probability check (probability >= 0 and probability <= 1),
    constraint category_rows_top3_array check (jsonb_typeof(top3) = 'array')
) partition by list (batch_id);
create unique index category_rows_batch_job on jobcast_internal.category_rows (batch_id, job_id);

create view predictions.job_category as
select r.job_id,
       r.category,
       r.probability,
       r.top3,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date
from jobcast_internal.category_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'category');

-- CVR: the probability that a view of the posting becomes an application.
create table jobcast_internal.cvr_rows (
    batch_id bigint not null,
    job_id   bigint not null,
    cvr      double precision not null,
    constraint cvr_rows_probability check (cvr > 0 and cvr < 1)
) partition by list (batch_id);
create unique index cvr_rows_batch_job on jobcast_internal.cvr_rows (batch_id, job_id);

create view predictions.job_cvr as
select r.job_id,
       r.cvr,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date
from jobcast_internal.cvr_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'cvr');

-- Least privilege as in 0002: the reader group may SELECT the views (the recreated job_salary lost its grant).
grant select on predictions.job_salary, predictions.job_category, predictions.job_cvr to jobcast_reader;

-- Web-app developers read these (docs/prediction-tables.md is generated from them by `jobcast docs`).
comment on view predictions.job_salary is 'Estimated annual salary (JPY) per active job posting, with an 80% interval, from the live salary batch. Refreshed daily.';
comment on column predictions.job_salary.job_id is 'app.job_postings.job_id; unique in this view.';
comment on column predictions.job_salary.salary_p10 is 'Lower end of the 80% interval: 10th percentile of the annual salary in JPY (<= salary_p50). NULL only in batches published before intervals existed (migration 0003), e.g. after a rollback to one.';
comment on column predictions.job_salary.salary_p50 is 'Median estimate of the annual salary in JPY (full-time equivalent midpoint of the range).';
comment on column predictions.job_salary.salary_p90 is 'Upper end of the 80% interval: 90th percentile of the annual salary in JPY (>= salary_p50). NULL only in batches published before intervals existed (migration 0003), e.g. after a rollback to one.';
comment on column predictions.job_salary.batch_id is 'predictions.batches.batch_id of the batch this row comes from.';
comment on column predictions.job_salary.model_version is 'Version of the model that produced the batch (models/salary/<version>/).';
comment on column predictions.job_salary.prediction_date is 'Logical date (Asia/Tokyo) the batch predicts for.';

comment on view predictions.job_category is 'Predicted job category per active job posting, from the live category batch. Refreshed daily.';
comment on column predictions.job_category.job_id is 'app.job_postings.job_id; unique in this view.';
comment on column predictions.job_category.category is 'The most likely category (one of the labels the model was trained on, e.g. 営業).';
comment on column predictions.job_category.probability is 'Model probability of category, between 0 and 1.';
comment on column predictions.job_category.top3 is 'The three most likely categories, most likely first: [{"category": "営業", "probability": 0.91}, ...]; the first is category. Probabilities sum to at most 1.';
comment on column predictions.job_category.batch_id is 'predictions.batches.batch_id of the batch this row comes from.';
comment on column predictions.job_category.model_version is 'Version of the model that produced the batch (models/category/<version>/).';
comment on column predictions.job_category.prediction_date is 'Logical date (Asia/Tokyo) the batch predicts for.';

comment on view predictions.job_cvr is 'Predicted conversion rate per active job posting (view -> application), from the live cvr batch. Refreshed daily.';
comment on column predictions.job_cvr.job_id is 'app.job_postings.job_id; unique in this view.';
comment on column predictions.job_cvr.cvr is 'Probability that one view of the posting on prediction_date becomes an application, strictly between 0 and 1 (expected applications = views x cvr).';
comment on column predictions.job_cvr.batch_id is 'predictions.batches.batch_id of the batch this row comes from.';
comment on column predictions.job_cvr.model_version is 'Version of the model that produced the batch (models/cvr/<version>/).';
comment on column predictions.job_cvr.prediction_date is 'Logical date (Asia/Tokyo) the batch predicts for.';
