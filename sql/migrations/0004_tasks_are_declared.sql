-- A prediction task is declared in code (jobcast.tasks: one module per task) with its own migration for its
-- table and view. The task lists in the CHECKs of 0001 made every new task edit this shared schema too; the
-- batch registry now accepts any task name of the declared form, and publish accepts only declared tasks.
alter table predictions.batches drop constraint batches_task_check;
alter table predictions.batches add constraint batches_task_name check (task ~ '^[a-z][a-z0-9_]*$');
alter table jobcast_internal.current_batch drop constraint current_batch_task_check;
alter table jobcast_internal.current_batch add constraint current_batch_task_name check (task ~ '^[a-z][a-z0-9_]*$');

comment on column predictions.batches.task is 'The prediction task: salary, category, cvr, or another declared task (docs/prediction-tables.md lists each task''s view).';
