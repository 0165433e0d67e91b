"""Before a MedAgentBench run: the FHIR server must hold every patient the tasks name.

Without them every task but a "Patient not found" one fails, and the run would report a score of the
server, not of the agent; `check_patients` stops it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.fhir import FhirClient

__all__ = ["PreflightError", "check_patients", "missing_patients"]

_SHOWN = 5


class PreflightError(RuntimeError):
    """The server lacks patients the tasks name; the message says how many and which."""


async def missing_patients(
    client: FhirClient, tasks: Sequence[MabTask], *, concurrency: int = 8
) -> list[str]:
    """The tasks' MRNs (`eval_MRN`) that no Patient on the server holds as an identifier, sorted."""
    mrns = sorted({t.eval_MRN for t in tasks if t.eval_MRN})
    semaphore = asyncio.Semaphore(concurrency)

    async def absent(mrn: str) -> bool:
        async with semaphore:
            return not await client.search("Patient").where(identifier=mrn).all(limit=1)

    flags = await asyncio.gather(*(absent(m) for m in mrns))
    return [m for m, missing in zip(mrns, flags, strict=True) if missing]


async def check_patients(client: FhirClient, tasks: Sequence[MabTask]) -> None:
    """Raise `PreflightError` unless the server holds a Patient for every task's MRN."""
    missing = await missing_patients(client, tasks)
    if not missing:
        return
    named = len({t.eval_MRN for t in tasks if t.eval_MRN})
    examples = ", ".join(missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
    raise PreflightError(
        f"the FHIR server at {client.base_url} lacks {len(missing)} of the {named} patients the tasks "
        f"name (eval_MRN), e.g. {examples}; load the benchmark's patients there or give --fhir-url of a "
        "server that holds them (nothing was run)"
    )
