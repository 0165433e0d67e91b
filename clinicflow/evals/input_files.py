"""Reading an eval's input files (task files, declarations, run files): the text, or an error naming the
file; and pydantic's complaints about one entry as one line."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

__all__ = ["read_input", "validation_problems"]


def read_input(path: Path, what: str, error: type[Exception]) -> str:
    """The file's text; `error` ("cannot read <what> <path>: <why>") when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def validation_problems(exc: ValidationError, whole: str) -> str:
    """`where: what` for each error, joined by "; "; `whole` names the entry itself (an error with no
    field)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in exc.errors())
