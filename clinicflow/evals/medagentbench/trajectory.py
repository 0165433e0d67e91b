"""What a MedAgentBench run records and concludes: an agent's trajectory on a task, its POSTs, and the
score the task's rule gives it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["Post", "Score", "Trajectory", "TrajectoryStatus"]

TrajectoryStatus = Literal["completed", "invalid_action", "echo", "limit_reached", "error"]
"""How a task ended: FINISH, an invalid action, a reply repeating the prompt, the round limit, an error."""


class Post(BaseModel):
    """One POST the agent made: where, what, and whether the harness accepted it."""

    url: str
    payload: Any = None
    accepted: bool = True


class Trajectory(BaseModel):
    """What an agent did on one task: its turns, its POSTs and its FINISH answer (raw JSON text)."""

    task_id: str
    agent: str
    status: TrajectoryStatus
    result: str | None = None
    posts: list[Post] = Field(default_factory=list)
    history: list[dict[str, str]] = Field(default_factory=list)
    rounds: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def accepted_posts(self) -> list[Post]:
        """The POSTs the harness accepted, in order."""
        return [p for p in self.posts if p.accepted]


class Score(BaseModel):
    """The verdict on one task: correct or not, why, and the reference it was checked against."""

    task_id: str
    task_type: int
    correct: bool
    reason: str
    expected: Any = None
