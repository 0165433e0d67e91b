"""HTTP service for hospital pipelines: runs, events, approvals, auth, audit and metrics.

`app` builds the application over `wiring` (what one process runs on). Endpoints by concern: `runs`,
`run_control`, `audit_routes`, `service_routes` (gathered by `routes`), CDS Hooks (`cds_*`) and MCP
(`mcp_*`); `access` checks tokens and scopes for them all and for the console. State: `store`, over
`database`, `tables` and `leases`.
"""

from clinicflow.api.app import create_app, model_loader
from clinicflow.api.auth import IssuedKey, Principal, create_api_key, issue_api_key, parse_scopes
from clinicflow.api.config import ApiSettings
from clinicflow.api.smart import SmartBackendAuth
from clinicflow.api.store import Store
from clinicflow.api.workflows import (
    Workflow,
    WorkflowDeps,
    WorkflowInputError,
    WorkflowRegistry,
    default_registry,
    ehr_qa_workflow,
    ehr_task_workflow,
    encounter_workflow,
)

__all__ = [
    "ApiSettings",
    "IssuedKey",
    "Principal",
    "SmartBackendAuth",
    "Store",
    "Workflow",
    "WorkflowDeps",
    "WorkflowInputError",
    "WorkflowRegistry",
    "create_api_key",
    "create_app",
    "default_registry",
    "ehr_qa_workflow",
    "ehr_task_workflow",
    "encounter_workflow",
    "issue_api_key",
    "model_loader",
    "parse_scopes",
]
