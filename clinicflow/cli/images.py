"""`clinicflow images`: build a MedSigLIP image index and search it (text, image, zero-shot labels)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from clinicflow.cli.progress import ProgressBar
from clinicflow.settings import Settings

if TYPE_CHECKING:
    from clinicflow.tools.images import ImageIndex

__all__ = ["images_app"]

images_app = typer.Typer(no_args_is_help=True, add_completion=False, help="MedSigLIP image index and search.")

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", help="Index folder (default: <cache_dir>/images).", show_default=False),
]
EncoderOpt = Annotated[
    Path | None, typer.Option("--encoder", help="MedSigLIP checkpoint folder (google/medsiglip-448 layout).")
]
RequiredEncoderOpt = Annotated[Path, typer.Option("--encoder", help="MedSigLIP checkpoint folder.")]
"""The checkpoint the indexing commands need (search defaults to the one that built the index)."""
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="Postgres URL: keep vectors in pgvector instead of the embedded store."
    ),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="torch device (default: cuda when present).")]
DtypeOpt = Annotated[
    str | None,
    typer.Option("--dtype", help="float32, bfloat16 or float16 (default: bfloat16 on CUDA, float32 on CPU)."),
]


def _settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # fields come from the environment (pydantic-settings)


def _index_path(index: Path | None) -> Path:
    return index if index is not None else _settings().cache_dir / "images"


def _open_index(
    index: Path | None,
    encoder: Path | None,
    database_url: str | None,
    device: str | None,
    dtype: str | None,
    *,
    create: bool = False,
) -> ImageIndex:
    """The image index at `--index` (default <cache_dir>/images), opened with the command's options."""
    from clinicflow.tools.images import ImageIndex

    return ImageIndex.open(
        _index_path(index),
        encoder=encoder,
        database_url=database_url,
        create=create,
        device=device,
        dtype=dtype,
    )


@contextmanager
def _user_errors() -> Iterator[None]:
    """Known failures end the command with a one-line message and exit status 2, not a traceback."""
    from clinicflow.fhir import FhirError
    from clinicflow.tools.images import ImageToolError

    try:
        yield
    except (ImageToolError, FhirError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@images_app.command("index")
def index_command(
    folder: Annotated[Path, typer.Argument(help="Folder of PNG, JPEG and DICOM images (recursive).")],
    encoder: RequiredEncoderOpt,
    index: IndexOpt = None,
    patient: Annotated[
        str | None, typer.Option("--patient", help="Tag every image with this FHIR Patient id.")
    ] = None,
    database_url: DatabaseOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Index every image under FOLDER; unreadable images are skipped and listed."""
    from clinicflow.tools.images import index_folder

    with _user_errors():
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a directory")
        with _open_index(index, encoder, database_url, device, dtype, create=True) as image_index:
            with ProgressBar("Indexing images", "image") as bar:
                report = index_folder(image_index, folder, patient_id=patient, progress=bar)
            typer.echo(report.summary())
            typer.echo(f"index {image_index.path}: {image_index.count()} images")


@images_app.command("index-fhir")
def index_fhir_command(
    patient: Annotated[str, typer.Argument(help="FHIR Patient id whose images to index.")],
    encoder: RequiredEncoderOpt,
    index: IndexOpt = None,
    fhir_url: Annotated[
        str | None, typer.Option("--fhir-url", help="FHIR base URL (default: settings).")
    ] = None,
    fetch_external: Annotated[
        bool,
        typer.Option(help="Also fetch attachment URLs and DICOMweb endpoints outside the FHIR server."),
    ] = False,
    database_url: DatabaseOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Index a patient's Media, DocumentReference and ImagingStudy images, keeping their FHIR references."""
    from clinicflow.fhir import FhirClient
    from clinicflow.tools.images import index_fhir_patient

    settings = _settings()
    url = fhir_url or settings.fhir_url
    with _user_errors():
        if not url:
            raise ValueError("no FHIR server: give --fhir-url or set CLINICFLOW_FHIR_URL")

        async def run(image_index: ImageIndex) -> str:
            import httpx

            async with FhirClient(
                url, token=settings.fhir_token, timeout=settings.fhir_timeout_s, retries=settings.fhir_retries
            ) as client:
                if fetch_external:
                    async with httpx.AsyncClient(
                        timeout=settings.fhir_timeout_s, follow_redirects=True
                    ) as http:
                        report = await index_fhir_patient(image_index, client, patient, http=http)
                else:
                    report = await index_fhir_patient(image_index, client, patient)
            return report.summary()

        with _open_index(index, encoder, database_url, device, dtype, create=True) as image_index:
            typer.echo(asyncio.run(run(image_index)))


@images_app.command("search")
def search_command(
    query: Annotated[str | None, typer.Argument(help="Text describing the images to find.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Find images similar to this file.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="How many images.")] = 5,
    labels: Annotated[
        str | None, typer.Option("--labels", help="Comma-separated labels for zero-shot labelling.")
    ] = None,
    label_mode: Annotated[
        str, typer.Option("--label-mode", help="softmax (pick one label) or sigmoid (each label alone).")
    ] = "softmax",
    patient: Annotated[str | None, typer.Option("--patient", help="Only this FHIR Patient's images.")] = None,
    index: IndexOpt = None,
    encoder: EncoderOpt = None,
    database_url: DatabaseOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Search by text or by --image; with --labels, score each result (and the query image) per label."""

    with _user_errors():
        if (query is None) == (image is None):
            raise ValueError('give either a text query or --image FILE (e.g. search "chest x-ray")')
        if label_mode not in ("softmax", "sigmoid"):
            raise ValueError(f"--label-mode must be softmax or sigmoid, got {label_mode!r}")
        label_list = [s.strip() for s in labels.split(",") if s.strip()] if labels else []
        if labels is not None and not label_list:
            raise ValueError("--labels needs at least one label, e.g. --labels 'normal,pneumothorax'")
        with _open_index(index, encoder, database_url, device, dtype) as image_index:
            scope = {"patient_id": patient} if patient else None
            if image_index.count(scope) == 0:
                typer.echo("no images indexed" + (f" for patient {patient}" if patient else ""))
                return
            mode: Literal["softmax", "sigmoid"] = "sigmoid" if label_mode == "sigmoid" else "softmax"
            if image is not None:
                if label_list:
                    scores = image_index.label_image(image, label_list, mode=mode)
                    typer.echo("query image: " + ", ".join(f"{s.label} {s.probability:.2f}" for s in scores))
                hits = image_index.search_image(image, k=k, filter=scope)
            else:
                hits = image_index.search_text(query or "", k=k, filter=scope)
            if label_list:
                hits = image_index.label_hits(hits, label_list, mode=mode)
            for n, hit in enumerate(hits, 1):
                typer.echo(f"{n}. {hit.line()}")
