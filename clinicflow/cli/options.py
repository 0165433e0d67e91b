"""Options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["EncoderOpt", "GuidelinesOpt", "ImageIndexOpt", "ModelOpt", "ModelUrlOpt"]

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model folder (MedGemma) or built-in name; default: CLINICFLOW_MODEL, else the tuned 270M.",
    ),
]
ModelUrlOpt = Annotated[
    str | None, typer.Option("--model-url", help="OpenAI-compatible base URL (vLLM, llama-server, ...).")
]
GuidelinesOpt = Annotated[
    bool | None,
    typer.Option(
        "--guidelines/--no-guidelines",
        help="Let the planner search the guideline index (<cache_dir>/guidelines.sqlite); "
        "default: on when it holds documents.",
        show_default=False,
    ),
]
ImageIndexOpt = Annotated[
    Path | None,
    typer.Option("--image-index", help="Image index folder: let the planner search the patient's images."),
]
EncoderOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder", help="MedSigLIP checkpoint folder for --image-index; default: the one that built it."
    ),
]
