"""Prometheus metrics of the service (the model pool registers its own).

Label values are route templates, methods, status codes and job states: never ids or content.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["method", "endpoint", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180),
)
JOBS = Gauge("jobs", "Jobs by state, counted in the database at scrape time", ["state"])
JOBS_FINISHED = Counter("jobs_finished_total", "Jobs that reached a terminal state", ["kind", "state"])
JOB_QUEUE_DEPTH = Gauge("job_queue_depth", "Jobs waiting for a worker")
JOB_DURATION = Histogram(
    "job_duration_seconds", "Job run time", ["kind"], buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 180, 600, 1800)
)
AUDIT_ROWS = Counter("audit_rows_total", "Audit rows written", ["action"])
SSE_STREAMS = Gauge("sse_streams_open", "Job event streams currently open")
# Workers and leases. Counters count in the process that saw the event (API or worker); the gauges
# below them are read from the shared database at scrape time, so every replica shows the whole fleet.
JOB_LEASE_EXPIRIES = Counter("job_lease_expiries_total", "Running jobs whose worker stopped renewing its lease")
JOB_RETRIES = Counter("job_retries_total", "Jobs queued again after their worker was lost")
JOBS_ACTIVE = Gauge("job_worker_active", "Jobs this process is running, by worker", ["worker"])
JOB_WORKER_RUNNING = Gauge("job_worker_running", "Running jobs by the worker holding their lease", ["worker"])
JOB_LEASES_EXPIRED = Gauge("job_leases_expired", "Running jobs whose lease has expired and await recovery")
JOBS_RETRIED = Gauge("jobs_retried", "Jobs that needed more than one attempt")
