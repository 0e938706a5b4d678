-- Reasons behind every prediction (jobcast.models.reasons): each prediction view gains `reasons` (jsonb), the
-- three strongest contributions behind the row, with a sign and a human name, that add up with a base and a
-- rest to the prediction on the model's raw scale. Stored next to the outputs; NULL in batches published before
-- this migration (e.g. after a rollback to one). CREATE OR REPLACE VIEW may only add columns at the end, so
-- `reasons` follows the lineage columns (and the views keep their grants and comments).

alter table jobcast_internal.salary_rows add column reasons jsonb;
alter table jobcast_internal.salary_rows add constraint salary_rows_reasons_object check (reasons is null or jsonb_typeof(reasons) = 'object');
create or replace view predictions.job_salary as
select r.job_id,
       r.salary_p10,
       r.salary_p50,
       r.salary_p90,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date,
       r.reasons
from jobcast_internal.salary_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'salary');
comment on column predictions.job_salary.reasons is 'Why this prediction: {"scale": "...", "value": v, "base": b, "top": [{"name": "title: エンジニア", "effect": 0.12}, ... up to 3, strongest first], "rest": r}, where base + the effects + rest = value, the prediction on the model''s raw scale (log salary (p50)). A positive effect pushes the prediction up. NULL only in batches published before reasons existed (migration 0006).';

alter table jobcast_internal.category_rows add column reasons jsonb;
alter table jobcast_internal.category_rows add constraint category_rows_reasons_object check (reasons is null or jsonb_typeof(reasons) = 'object');
create or replace view predictions.job_category as
select r.job_id,
       r.category,
       r.probability,
       r.top3,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date,
       r.reasons
from jobcast_internal.category_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'category');
comment on column predictions.job_category.reasons is 'Why this prediction: {"scale": "...", "value": v, "base": b, "top": [{"name": "title: エンジニア", "effect": 0.12}, ... up to 3, strongest first], "rest": r}, where base + the effects + rest = value, the prediction on the model''s raw scale (the booster''s score of the predicted category (softmax input), or the text model''s linear score when it predicts alone). A positive effect pushes the prediction up. NULL only in batches published before reasons existed (migration 0006).';

alter table jobcast_internal.cvr_rows add column reasons jsonb;
alter table jobcast_internal.cvr_rows add constraint cvr_rows_reasons_object check (reasons is null or jsonb_typeof(reasons) = 'object');
create or replace view predictions.job_cvr as
select r.job_id,
       r.cvr,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date,
       r.reasons
from jobcast_internal.cvr_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'cvr');
comment on column predictions.job_cvr.reasons is 'Why this prediction: {"scale": "...", "value": v, "base": b, "top": [{"name": "title: エンジニア", "effect": 0.12}, ... up to 3, strongest first], "rest": r}, where base + the effects + rest = value, the prediction on the model''s raw scale (logit of cvr). A positive effect pushes the prediction up. NULL only in batches published before reasons existed (migration 0006).';

alter table jobcast_internal.job_tags_rows add column reasons jsonb;
alter table jobcast_internal.job_tags_rows add constraint job_tags_rows_reasons_object check (reasons is null or jsonb_typeof(reasons) = 'object');
create or replace view predictions.job_tags as
select r.job_id,
       r.tags,
       r.probabilities,
       r.batch_id,
       b.model_version,
       b.logical_date as prediction_date,
       r.reasons
from jobcast_internal.job_tags_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'job_tags');
comment on column predictions.job_tags.reasons is 'Why this prediction: {"scale": "...", "value": v, "base": b, "top": [{"name": "title: エンジニア", "effect": 0.12}, ... up to 3, strongest first], "rest": r}, where base + the effects + rest = value, the prediction on the model''s raw scale (logit that the most likely tag is ticked (the published probability is that, divided by the tag''s tick rate)). A positive effect pushes the prediction up. NULL only in batches published before reasons existed (migration 0006).';
