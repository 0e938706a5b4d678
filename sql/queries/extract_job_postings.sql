-- Postings open at the end of the logical day (the set we predict for), as the web app sees them.
select job_id, company_id, title, description, prefecture, employment_type, category,
       salary_min, salary_max, posted_at, closed_at
from {source}.job_postings
where posted_at < %(day_end)s
  and (closed_at is null or closed_at >= %(day_end)s)
order by job_id
