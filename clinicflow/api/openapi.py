"""The OpenAPI document of the service, with `RunCreate` spelled out for each registered workflow."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from clinicflow.api.workflows import WorkflowRegistry

__all__ = ["use_workflow_inputs", "with_workflow_inputs"]


def with_workflow_inputs(schema: dict[str, Any], registry: WorkflowRegistry) -> dict[str, Any]:
    """The OpenAPI document with `RunCreate` spelled out per registered workflow (plugins included): the
    workflow's name and the JSON schema of its input, so that a client sees which input each one takes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    workflows = [registry.get(name) for name in registry.names()]
    refs, defs = models_json_schema(
        [(w.input_model, "validation") for w in workflows], ref_template="#/components/schemas/{model}"
    )
    components.update(defs.get("$defs", {}))
    generic = components["RunCreate"]
    variants = []
    for workflow in workflows:
        properties = dict(generic["properties"])
        properties["workflow"] = {"type": "string", "const": workflow.name}
        properties["input"] = refs[(workflow.input_model, "validation")]
        variants.append(
            {
                "title": f"RunCreate[{workflow.name}]",
                "type": "object",
                "properties": properties,
                "required": ["workflow", "input"],
                "additionalProperties": False,
            }
        )
    components["RunCreate"] = {
        "title": "RunCreate",
        "description": generic["description"],
        "oneOf": variants,
        "discriminator": {"propertyName": "workflow"},
    }
    return schema


def use_workflow_inputs(app: FastAPI, registry: WorkflowRegistry) -> None:
    """Make the app's OpenAPI document the one `with_workflow_inputs` gives (built once, on first use)."""
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_workflow_inputs(generate_openapi(), registry)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
