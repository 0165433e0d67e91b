"""Errors raised by the model layer, each a readable sentence naming the folder or URL involved.

::

    ModelError                      anything that went wrong loading or calling a model
    ├── ModelNotFoundError          a model folder that does not exist or holds no model (names the path)
    ├── ModelLoadError              the folder exists but the weights or tokenizer could not be loaded
    ├── ModelDependencyError        an optional package a backend needs is missing (with an install hint)
    ├── ModelInputError             a request the model cannot take (over its context window), a ValueError
    └── (the model server's errors, each with the server's `url`)
        ├── ModelConnectionError    the model server could not be reached (names the URL and the reason)
        ├── ModelTimeoutError       the model server did not answer within the timeout
        └── ModelResponseError      the model server answered with an error status or an unreadable body

A model reply that is not a valid tool call is not an exception: it becomes an `AIMessage` whose
`invalid_tool_calls` carry the error, so a graph can send it back to the model.
"""

from __future__ import annotations

__all__ = [
    "ModelConnectionError",
    "ModelDependencyError",
    "ModelError",
    "ModelInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelResponseError",
    "ModelTimeoutError",
]


class ModelError(Exception):
    """Base class of every error raised by `clinicflow.model`."""


class ModelNotFoundError(ModelError):
    """A model folder that does not exist, or is not a Hugging Face model folder."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"model folder {path}: {reason}")
        self.path = path


class ModelLoadError(ModelError):
    """The model folder exists but loading its weights or tokenizer failed."""


class ModelDependencyError(ModelError):
    """A package a backend needs is not installed."""


class ModelInputError(ModelError, ValueError):
    """A request the model cannot take, such as a prompt plus reply longer than its context window."""


class _ServerError(ModelError):
    """An error about the model server at `url`: it could not be reached, did not answer, or answered
    with an error."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class ModelConnectionError(_ServerError):
    """The OpenAI-compatible model server could not be reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, f"cannot reach the model server at {url}: {reason}")


class ModelTimeoutError(_ServerError):
    """The model server accepted the request but did not answer in time."""

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url, f"the model server at {url} did not answer within {timeout:g} s")


class ModelResponseError(_ServerError):
    """The model server answered with an error status or a body that is not a chat completion."""

    def __init__(self, url: str, status: int | None, detail: str) -> None:
        where = f"the model server at {url}"
        super().__init__(url, f"{where} answered {status}: {detail}" if status else f"{where}: {detail}")
        self.status = status
