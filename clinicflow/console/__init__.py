"""The clinician's console at `/console`: the approval queue, the run viewer, Ask and eval reports.

Server-rendered pages (Jinja2 templates and one small script) over the same functions as the HTTP API:
the same authentication, patient-scope checks, approval path and audit trail.
"""

from clinicflow.console.routes import console_router

__all__ = ["console_router"]
