"""State channels the workflows share: the run's trace and errors (each node's items appended) and a
model's tool-call conversation."""

from __future__ import annotations

import operator
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from clinicflow.graphs.trace import TraceRecord

__all__ = ["Conversation", "Errors", "Trace"]

Trace = Annotated[list[TraceRecord], operator.add]
Errors = Annotated[list[str], operator.add]
Conversation = Annotated[list[AnyMessage], add_messages]
