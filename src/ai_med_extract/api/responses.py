"""Responses more than one route answers with."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ai_med_extract.jobs.service import SubmittedJob


def job_accepted(submitted: SubmittedJob, extra: dict[str, Any] | None = None) -> JSONResponse:
    """202 with where to follow the job: its id, status, event stream and (``Location``) itself."""
    return JSONResponse(
        {
            "job_id": submitted.job_id,
            "status": submitted.status,
            "events": f"/job/{submitted.job_id}/events",
            **(extra or {}),
        },
        status_code=202,
        headers={"Location": f"/job/{submitted.job_id}"},
    )
