"""Synthetic patient cohorts: Synthea-style FHIR transaction bundles from PySynthea (`tietai-synthea`).

Output is deterministic for a given seed and reference date: the same arguments write identical files.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from datetime import date, datetime
from pathlib import Path

__all__ = ["DEFAULT_REFERENCE_DATE", "CohortError", "generate_cohort"]

DEFAULT_REFERENCE_DATE = date(2026, 1, 1)


class CohortError(RuntimeError):
    """PySynthea failed to generate or export a patient; the message carries its output."""


def generate_cohort(
    out_dir: Path | str,
    patients: int,
    seed: int,
    reference_date: date = DEFAULT_REFERENCE_DATE,
    progress: bool = True,
) -> list[Path]:
    """Write one FHIR transaction bundle per patient into `out_dir`; return their paths, sorted.

    Patients are simulated up to `reference_date`. Takes about 1-4 s per patient on one CPU core.
    """
    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synthea-", dir=out) as staging:
        _run_synthea(Path(staging), patients, seed, reference_date, progress)
        written = sorted((Path(staging) / "fhir").glob("*.json"))
        if len(written) != patients:
            raise CohortError(f"PySynthea wrote {len(written)} bundles for {patients} patients in {staging}")
        paths = []
        for src in written:
            dest = out / src.name
            shutil.move(src, dest)
            paths.append(dest)
    return sorted(paths)


def _run_synthea(staging: Path, patients: int, seed: int, reference_date: date, progress: bool) -> None:
    from synthea.engine.generator import Generator, GeneratorOptions
    from synthea.helpers.config import Config
    from tqdm import tqdm

    options = GeneratorOptions()
    options.population_size = patients
    options.seed = seed
    options.reference_date = datetime(reference_date.year, reference_date.month, reference_date.day)
    options.reference_date_explicit = True
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        config = Config()
        config.load()
        config.set("exporter.baseDirectory", str(staging))
        generator = Generator(options, config=config)
        if generator.exporter is None:
            raise CohortError("PySynthea has no exporter configured")
        generator.exporter.begin_run()
    with tqdm(total=patients, unit="patient", desc="Generating cohort", disable=not progress) as bar:
        for index in range(patients):
            with contextlib.redirect_stdout(chatter):
                person = generator.generate_person(index)
                if person is None:
                    raise CohortError(f"PySynthea rejected patient {index} (seed {seed})")
                generator.record_person(person)
            if "Error exporting" in chatter.getvalue():
                raise CohortError(f"PySynthea failed to export patient {index}: {chatter.getvalue()[-2000:]}")
            bar.update(1)
    with contextlib.redirect_stdout(chatter):
        generator.exporter.run_post_completion(generator.stats)
