"""HTTP service for hospital pipelines: runs, events, approvals, auth, audit and metrics."""

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
