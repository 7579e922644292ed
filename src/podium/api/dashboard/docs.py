"""`/docs`: Swagger UI over the API's OpenAPI document, from files in the installed package
(swagger-ui-bundle), so it works without internet; the document is read under the session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page

router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, permit(Permission.RUNS_READ)]


@router.get("/docs", response_class=HTMLResponse)
async def swagger(request: Request, principal: Reader) -> HTMLResponse:
    return page(request, "docs.html")


@router.get(f"{PREFIX}/openapi.json")
async def openapi(request: Request, principal: Reader) -> JSONResponse:
    return JSONResponse(request.app.openapi())
