"""The JSON API's OpenAPI description (`GET /api/v1/openapi.json`), for logged-in admins only: it names every
route and body, which is more than an anonymous caller needs to know."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from review.routes.auth import require
from review.users import User
from vigil_core.build import vigil_version
from vigil_core.roles import ADMIN

__all__ = ["router", "openapi_document"]

router = APIRouter()


def openapi_document(app_routes: list[Any]) -> dict[str, Any]:
    """OpenAPI 3 of the routes under /api/."""
    routes = [r for r in app_routes if str(getattr(r, "path", "")).startswith("/api/")]
    return get_openapi(title="Vigil review API", version=vigil_version(), routes=routes,
                       description="Bearer token from POST /api/v1/session; state-changing calls with a browser "
                                   "session also need the X-CSRF-Token header.")


@router.get("/api/v1/openapi.json")
async def api_openapi(request: Request, user: User = Depends(require(ADMIN))) -> JSONResponse:
    # the app keeps each included router as one entry: create_app lists the routers' routes in its state
    return JSONResponse(openapi_document(request.app.state.routes))
