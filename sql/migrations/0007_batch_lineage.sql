-- What each batch was made from, so `jobcast reproduce BATCH_ID` can rebuild it: the code commit that scored it,
-- the model version and the day's raw snapshots as DVC entries (content hashes in the project's DVC remote,
-- archived by publish before the swap), the features' content version and the effective params. NULL in
-- batches published before this migration: those cannot be reproduced by the command.

alter table predictions.batches add column lineage jsonb;
alter table predictions.batches add constraint batches_lineage_object check (lineage is null or jsonb_typeof(lineage) = 'object');
comment on column predictions.batches.lineage is 'What the batch was made from: {"code": git commit that scored it ("-dirty": with uncommitted changes), "model": {"path", "md5", ...} (DVC entry of models/<task>/<version>), "raw": {table: {"path", "md5", ...}} (DVC entries of the day''s raw snapshots), "remote": DVC remote url, "features_version", "params"}. `jobcast reproduce BATCH_ID` rebuilds the batch from it. NULL before migration 0007.';
