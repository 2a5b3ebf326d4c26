"""Rate limits shared by replicas: two real ``serve`` processes counting in one Redis.

Each API alone sees only half of a burst, under its own limit; the limit is nevertheless reached for
both together, and both answer 429 once it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import _pg_execute, _pg_url
from tests.jobs.test_workers import Cluster

LIMIT = 10  # requests per client IP per minute, for both APIs together
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="module")
def two_apis(postgres: str, pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"ame_rl_{uuid.uuid4().hex[:12]}"
    _pg_execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    dsn = postgres.rsplit("/", 1)[0] + f"/{name}"
    cluster = Cluster(_pg_url(postgres, name), dsn, tmp_path_factory.mktemp("shared-limits"))
    cluster.env.update({
        "AME_SECURITY__RATE_LIMIT__ENABLED": "true",
        "AME_SECURITY__RATE_LIMIT__REDIS_URL": REDIS_URL,
        "AME_SECURITY__RATE_LIMIT__REDIS_KEY_PREFIX": f"ame-test-{uuid.uuid4().hex[:8]}",
        "AME_SECURITY__RATE_LIMIT__PER_IP_PER_MINUTE": str(LIMIT),
        "AME_SECURITY__RATE_LIMIT__BURST": "1000",
    })  # fmt: skip
    try:
        cluster.start_api()
        cluster.start_api()
        yield cluster
    finally:
        cluster.stop()
        _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.timeout(300)
def test_a_burst_above_the_shared_limit_is_refused_by_both_apis_together(two_apis: Cluster) -> None:
    (_, api_a, _), (_, api_b, _) = two_apis.apis[:2]
    missing = f"/job/{uuid.uuid4()}"
    with httpx.Client(timeout=30) as client:
        for i in range(LIMIT):  # alternating: each API serves only half of the limit
            response = client.get((api_a, api_b)[i % 2] + missing)
            assert response.status_code == 404, (i, response.text)
            assert response.headers["ratelimit-limit"] == str(LIMIT)
            assert int(response.headers["ratelimit-remaining"]) == LIMIT - 1 - i  # one count for both
        for url in (api_a, api_b, api_a, api_b):
            refused = client.get(url + missing)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "RATE_LIMITED"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-remaining"] == "0"
        # A body-carrying request is refused before its body is read, on either API.
        for url in (api_a, api_b):
            upload = client.post(url + "/upload", files={"files": ("n.txt", b"note", "text/plain")})
            assert upload.status_code == 429, upload.text
