"""Every Prometheus metric of the service, declared once, in prometheus_client's default registry.

Modules that count something import this module and use its collectors; none declares its own.
Label values are route templates, methods, status codes, job states and model names: never ids or
content.
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
# The model pool (inference/): labels carry model names only.
MODEL_LOAD_TIME = Histogram(
    "model_load_time_seconds",
    "Time to load a model",
    ["model_name"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
MODEL_INFERENCE_TIME = Histogram(
    "model_inference_time_seconds",
    "Time of one generation or transcription",
    ["model_name"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300),
)
MODEL_MEMORY = Gauge("model_memory_usage_bytes", "Measured memory of a loaded model", ["model_name"])
MODEL_TOKENS = Counter("model_tokens_generated", "Tokens generated", ["model_name"])
MODEL_PROMPT_TOKENS = Counter("model_prompt_tokens", "Prompt tokens processed", ["model_name"])
MODEL_FALLBACKS = Counter("model_fallbacks", "Requests served by another model", ["requested", "used"])
MODEL_EVICTIONS = Counter("model_evictions", "Models unloaded to make room", ["model_name"])
