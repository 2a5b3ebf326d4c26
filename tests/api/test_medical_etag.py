"""Corrections with ETag / If-Match: reads answer an ETag, a stale If-Match is a 412 with a stable code."""

from __future__ import annotations

import httpx

from tests.api.test_medical import NOTE


async def _created(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.post("/extract_medical_data", json={"text": NOTE})
    assert response.status_code == 200, response.text
    return response


async def test_reads_answer_an_etag_of_the_record_and_version(client: httpx.AsyncClient) -> None:
    created = await _created(client)
    record_id = created.json()["record_id"]

    read = await client.get("/get_updated_medical_data", params={"record_id": record_id})

    assert created.headers["etag"] == read.headers["etag"] == f'"{record_id}.v1"'


async def test_correction_with_the_current_etag_succeeds_and_answers_the_next_one(client: httpx.AsyncClient) -> None:
    created = (await _created(client)).json()
    read = await client.get("/get_updated_medical_data", params={"record_id": created["record_id"]})

    updated = await client.put(
        "/update_medical_data",
        json={"record_id": created["record_id"], "data": created["data"]},  # the version comes from If-Match
        headers={"If-Match": read.headers["etag"]},
    )

    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert updated.headers["etag"] == f'"{created["record_id"]}.v2"'


async def test_stale_if_match_is_refused_with_412_and_nothing_is_written(client: httpx.AsyncClient) -> None:
    created = (await _created(client)).json()
    record_id = created["record_id"]
    first_etag = f'"{record_id}.v1"'
    payload = {"record_id": record_id, "data": created["data"]}
    assert (await client.put("/update_medical_data", json=payload, headers={"If-Match": first_etag})).status_code == 200

    stale = await client.put("/update_medical_data", json=payload, headers={"If-Match": first_etag})

    assert stale.status_code == 412
    error = stale.json()["error"]
    assert error["code"] == "MEDICAL_PRECONDITION_FAILED"
    assert error["details"] == {"current_version": 2, "etag": f'"{record_id}.v2"'}
    latest = (await client.get("/get_updated_medical_data", params={"record_id": record_id})).json()
    assert latest["version"] == 2


async def test_an_etag_of_another_record_does_not_match(client: httpx.AsyncClient) -> None:
    one = (await _created(client)).json()
    other = (await _created(client)).json()

    response = await client.put(
        "/update_medical_data",
        json={"record_id": one["record_id"], "data": one["data"]},
        headers={"If-Match": f'"{other["record_id"]}.v1"'},
    )

    assert response.status_code == 412


async def test_body_version_is_still_checked_beside_if_match(client: httpx.AsyncClient) -> None:
    created = (await _created(client)).json()
    record_id = created["record_id"]
    assert (await client.put("/update_medical_data", json={"record_id": record_id, "version": 1,
                                                            "data": created["data"]})).status_code == 200

    response = await client.put(
        "/update_medical_data",
        json={"record_id": record_id, "version": 1, "data": created["data"]},
        headers={"If-Match": "*"},
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "MEDICAL_VERSION_CONFLICT"


async def test_a_correction_without_any_version_is_refused(client: httpx.AsyncClient) -> None:
    created = (await _created(client)).json()

    response = await client.put("/update_medical_data", json={"record_id": created["record_id"], "data": created["data"]})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MEDICAL_VERSION_REQUIRED"
