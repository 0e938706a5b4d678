-- Least privilege for web apps: group role jobcast_reader may read the public views and the batch
-- registry, nothing else (no writes, no jobcast_internal, no app/truth). Login roles join it through
-- `jobcast db create-reader NAME`. The views run with their owner's rights, so readers need no grant on
-- the internal tables behind them.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'jobcast_reader') then
        create role jobcast_reader nologin;
    end if;
end
$$;

revoke all on schema jobcast_internal from public;
grant usage on schema predictions to jobcast_reader;
grant select on predictions.batches, predictions.job_salary to jobcast_reader;
-- Views added by later migrations are readable without another grant.
alter default privileges in schema predictions grant select on tables to jobcast_reader;

comment on role jobcast_reader is 'Web apps: SELECT on predictions.* views and predictions.batches only.';

-- Every public column documented (docs/prediction-tables.md is generated from these).
comment on column predictions.batches.batch_id is 'Identity of the batch; the batch_id column of the prediction views.';
comment on column predictions.batches.task is 'salary, category or cvr.';
comment on column predictions.batches.logical_date is 'The date (Asia/Tokyo) the batch predicts for.';
comment on column predictions.batches.model_version is 'Model that produced the batch (models/<task>/<version>/).';
comment on column predictions.batches.data_version is 'Content hash of the predictions that were validated and loaded.';
comment on column predictions.batches.row_count is 'Rows loaded (one per open posting).';
comment on column predictions.batches.validation_success is 'Whether the Great Expectations suite passed (only passing batches are loaded).';
comment on column predictions.batches.report_path is 'Data Docs page of the validation.';
comment on column predictions.batches.run_id is 'The Airflow run (or CLI run) that made the batch.';
comment on column predictions.batches.message is 'Why the batch is in its status (backfill kept as history, failure reason, rollback).';
comment on column predictions.batches.created_at is 'When loading started.';
comment on column predictions.batches.published_at is 'When the batch last became live.';
comment on column predictions.batches.updated_at is 'Last status change.';
