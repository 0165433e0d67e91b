"""CDS Hooks 2.0 JSON shapes: the discovery document, a hook request and the cards response.

Requests are checked strictly where the spec says MUST (hook, hookInstance, context, the patient's id);
unknown fields are kept (the spec lets clients and services add extensions).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from clinicflow.api.workflows import PatientId

__all__ = [
    "Action",
    "Card",
    "CdsRequest",
    "CdsResponse",
    "CdsService",
    "Discovery",
    "FhirAuthorization",
    "Link",
    "OrderSignContext",
    "PatientViewContext",
    "Source",
    "Suggestion",
]

SUMMARY_MAX = 140


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class CdsService(BaseModel):
    """One entry of `GET /cds-services`."""

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str] = Field(default_factory=dict)
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[CdsService]


class FhirAuthorization(_Open):
    """The OAuth 2.0 access token a CDS client hands over for reading its FHIR server."""

    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    patient: PatientId | None = None


class CdsRequest(_Open):
    """A hook call; `context` is checked by the hook's own context model."""

    hook: str = Field(min_length=1)
    hookInstance: uuid.UUID
    fhirServer: HttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> CdsRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization is given without fhirServer: the token needs its server")
        return self


class PatientViewContext(_Open):
    userId: str = Field(min_length=1)
    patientId: PatientId
    encounterId: str | None = None


class OrderSignContext(_Open):
    userId: str = Field(min_length=1)
    patientId: PatientId
    encounterId: str | None = None
    draftOrders: dict[str, Any]

    @model_validator(mode="after")
    def _bundle(self) -> OrderSignContext:
        if self.draftOrders.get("resourceType") != "Bundle":
            raise ValueError("context.draftOrders must be a FHIR Bundle of the orders being signed")
        if not isinstance(self.draftOrders.get("entry", []), list):
            raise ValueError("context.draftOrders.entry must be a list")
        return self


class Source(BaseModel):
    label: str = Field(min_length=1)
    url: HttpUrl | None = None
    topic: dict[str, Any] | None = None


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _target(self) -> Action:
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action names the resource in resourceId")
        if self.type != "delete" and self.resource is None:
            raise ValueError(f"a {self.type} action carries the resource")
        return self


class Suggestion(BaseModel):
    label: str = Field(min_length=1)
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(BaseModel):
    label: str = Field(min_length=1)
    url: HttpUrl
    type: Literal["absolute", "smart"] = "absolute"
    appContext: str | None = None


class Card(BaseModel):
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX - 1)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("a card with suggestions states its selectionBehavior")
        return self


class CdsResponse(BaseModel):
    cards: list[Card]
