-- The web app's own tables, as the demo generator plays the web app. In production jobcast only reads
-- these (or views of the same shape over the board's tables): see docs/source-contract.md.
create schema if not exists app;
create schema if not exists truth;

create table if not exists app.job_postings (
    job_id          bigint primary key,
    company_id      bigint not null,
    title           text,
    description     text,
    prefecture      text not null,
    employment_type text not null,
    category        text,            -- as filed by the employer; null when not filed
    salary_min      bigint,          -- annual JPY, null when not disclosed
    salary_max      bigint,
    posted_at       timestamptz not null,
    closed_at       timestamptz
);
create index if not exists job_postings_posted on app.job_postings (posted_at);

create table if not exists app.events (
    event_id    bigint primary key,
    job_id      bigint not null,
    session_id  bigint not null,
    event_type  text not null,       -- 'view' | 'apply'
    occurred_at timestamptz not null
);
create index if not exists events_occurred on app.events (occurred_at);

-- The job-characteristics tags an employer ticked (optional in the source contract; many postings tick none).
create table if not exists app.job_posting_tags (
    job_id bigint not null,
    tag    text not null,
    primary key (job_id, tag)
);

-- Ground truth known only to the generator; no step but evaluation reads it.
create table if not exists truth.job_salary (job_id bigint primary key, salary double precision not null);
create table if not exists truth.job_category (job_id bigint primary key, category text not null);
alter table truth.job_category add column if not exists bayes_category text;
create table if not exists truth.job_cvr (job_id bigint primary key, cvr double precision not null);
create table if not exists truth.job_cvr_daily (job_id bigint not null, day date not null, cvr double precision not null,
                                                primary key (job_id, day));
-- Edits of live postings (app.job_postings holds the current values): salary edits as a salary_min and a salary_max row.
create table if not exists truth.job_edits (job_id bigint not null, edited_at timestamptz not null, field text not null,
                                            old_value text, new_value text, primary key (job_id, field, edited_at));
-- Every posting's true tags and the best possible probability of each from its content (see jobcast.generate.core).
create table if not exists truth.job_tags (job_id bigint not null, tag text not null, present boolean not null,
                                           posterior double precision not null, primary key (job_id, tag));
