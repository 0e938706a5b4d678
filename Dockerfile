# One image for every jobcast service (Airflow components and the jobs they run).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /opt/jobcast
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
COPY jobs ./jobs
RUN UV_PYTHON_DOWNLOADS=never uv sync --frozen --no-dev --python /usr/local/bin/python3.11
COPY . .
ARG JOBCAST_CODE_VERSION=unknown
ENV JOBCAST_CODE_VERSION=$JOBCAST_CODE_VERSION
ENV PATH=/opt/jobcast/.venv/bin:/opt/jobcast/.venv/lib/python3.11/site-packages/pyspark/bin:$PATH \
    SPARK_HOME=/opt/jobcast/.venv/lib/python3.11/site-packages/pyspark \
    JOBCAST_HOME=/opt/jobcast \
    PYSPARK_PYTHON=/opt/jobcast/.venv/bin/python \
    GX_ANALYTICS_ENABLED=False \
    DVC_NO_ANALYTICS=1
