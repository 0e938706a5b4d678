-- One PostgreSQL for the shared database (jobcast) and Airflow's metadata (airflow).
create user airflow with password 'airflow';
create database airflow owner airflow;
