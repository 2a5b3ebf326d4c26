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
