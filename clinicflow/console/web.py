"""Rendering for the console: the Jinja2 environment, citation links, error pages and the route class
that turns the API's errors into pages (and a missing login into a redirect to the login form)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinicflow.console.session import CSRF_FIELD, LoginRequiredError, Visitor

__all__ = ["PREFIX", "STATIC_DIR", "ConsoleRoute", "cite_links", "page", "resource_url"]

PREFIX = "/console"
STATIC_DIR = Path(__file__).with_name("static")
_CITATION = re.compile(r"\[([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})\]")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def resource_url(reference: str) -> str | None:
    """The console page of a `Type/id` reference, or None for anything else."""
    match = _REFERENCE.match(reference or "")
    return f"{PREFIX}/fhir/{match.group(1)}/{match.group(2)}" if match else None


def cite_links(text: Any) -> Markup:
    """Text, escaped, with every `[Type/id]` citation a link to the cited resource."""
    out: list[str] = []
    last = 0
    raw = "" if text is None else str(text)
    for match in _CITATION.finditer(raw):
        out.append(str(escape(raw[last : match.start()])))
        ref = f"{match.group(1)}/{match.group(2)}"
        out.append(f'<a class="cite" href="{resource_url(ref)}">[{escape(ref)}]</a>')
        last = match.end()
    out.append(str(escape(raw[last:])))
    return Markup("".join(out))


def _ref_link(reference: Any) -> Markup:
    url = resource_url(str(reference))
    if url is None:
        return Markup("<code>{}</code>").format(reference)
    return Markup('<a class="cite" href="{}">{}</a>').format(url, reference)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _pct(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * float(value):.{digits}f}%"


_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(cite=cite_links, ref=_ref_link, pretty=_pretty, pct=_pct, urlquote=quote)
_env.globals.update(prefix=PREFIX, csrf_field=CSRF_FIELD)


def page(
    request: Request, template: str, visitor: Visitor | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A rendered page, with who is logged in and the CSRF token its forms need."""
    body = _env.get_template(template).render(
        request=request,
        visitor=visitor,
        csrf=visitor.csrf if visitor else context.pop("csrf", None),
        nav=context.pop("nav", ""),
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status_code: int, detail: Any) -> HTMLResponse:
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    titles = {401: "Not logged in", 403: "Not allowed", 404: "Not found", 409: "Already decided"}
    title = titles.get(status_code, "Cannot do that")
    return page(
        request, "error.jinja", None, status_code=status_code, title=title, detail=str(detail), csrf=None
    )


def _login_redirect(request: Request) -> Response:
    if request.method != "GET":
        return error_page(request, 401, "your session has ended; log in again")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)


class ConsoleRoute(APIRoute):
    """An API route whose errors are pages: 401 sends a browser to the login form, HTTP errors raised by
    the API's functions (403, 404, 409, 422, 429) render as an error page with the same status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequiredError:
                response = _login_redirect(request)
            except StarletteHTTPException as exc:
                if exc.status_code == 401:
                    response = _login_redirect(request)
                else:
                    response = error_page(request, exc.status_code, exc.detail)
            except RequestValidationError as exc:
                in_path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())
                response = error_page(request, 404 if in_path else 422, exc.errors())
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle
