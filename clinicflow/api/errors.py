"""How the service answers errors: JSON bodies with `detail`, and the headers each status calls for."""

from __future__ import annotations

import json
import re

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinicflow.api.auth import AuthError, ForbiddenError
from clinicflow.api.workers import QueueFullError

__all__ = ["add_error_handlers"]


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists at this path, with HEAD where GET is (Starlette serves it);
    Starlette's own 405 names only the methods of the first route matching the path."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def add_error_handlers(app: FastAPI) -> None:
    """422 for invalid requests, 405 with `Allow`, 401 / 403 for tokens, 429 for a full queue."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # ASCII-escaped, so an echoed input holding a lone surrogate is still valid UTF-8 JSON.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allow = ", ".join(_allowed_methods(app, request.url.path))
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})
        return await http_exception_handler(request, exc)  # type: ignore[return-value]

    @app.exception_handler(AuthError)
    async def _unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=403)

    @app.exception_handler(QueueFullError)
    async def _full(request: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": "5"})
