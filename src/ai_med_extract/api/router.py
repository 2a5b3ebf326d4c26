"""Every route module of the API, registered in one place."""

from fastapi import APIRouter

from ai_med_extract.api.routes import audit, health, jobs, llm, medical, phi, summary, transcribe, web

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(jobs.router)
api_router.include_router(phi.router)
api_router.include_router(medical.router)
api_router.include_router(llm.router)
api_router.include_router(summary.router)
api_router.include_router(transcribe.router)
api_router.include_router(audit.router)
api_router.include_router(web.router)
