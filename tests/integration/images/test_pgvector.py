"""The pgvector store on a private Postgres (127.0.0.1, free port, torn down); same contract as embedded.

Uses the first Postgres whose share dir has the `vector` extension: a system install
(`postgresql-NN-pgvector`) or the server bundled in the `pgserver` wheel. Skips when there is none.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clinicflow.tools.images import (
    EmbeddedVectorStore,
    ImageIndex,
    ImageIndexError,
    LoadedImage,
    VectorStore,
    VectorStoreError,
    open_store,
)
from clinicflow.tools.images.pgvector_store import PgVectorStore
from tests.unit.images.fakes import FakeEncoder, solid

pytestmark = pytest.mark.integration
pytest.importorskip("psycopg", reason="the pgvector store needs `pip install 'psycopg[binary]' pgvector`")
pytest.importorskip("pgvector", reason="the pgvector store needs `pip install 'psycopg[binary]' pgvector`")


def _candidate_bin_dirs() -> list[Path]:
    dirs = [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    return [d for d in dirs if (d / "initdb").exists() and (d / "pg_ctl").exists()]


def _has_pgvector(bin_dir: Path) -> bool:
    try:
        share = subprocess.run(
            [str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return (Path(share) / "extension" / "vector.control").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway Postgres with pgvector, started for this module and removed after."""
    bin_dir = next((d for d in _candidate_bin_dirs() if _has_pgvector(d)), None)
    if bin_dir is None:
        pytest.skip(
            "pgvector extension unavailable: no Postgres with vector.control found "
            "(install postgresql-15-pgvector, or `pip install pgserver`)"
        )
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("initdb refuses to run as root and there is no `postgres` user to run it as")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="clinicflow-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*pg_ctl, "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"],
            check=True,
            capture_output=True,
            timeout=90,
        )
    except subprocess.SubprocessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a private Postgres from {bin_dir}: {exc}\n{log}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_same_results_as_the_embedded_store(postgres_url: str) -> None:
    vectors = unit(300, 24, seed=0)
    ids = [f"v{i}" for i in range(300)]
    meta = [{"patient_id": f"p{i % 4}", "path": f"/img/{i}.png", "n": i} for i in range(300)]
    stores: list[VectorStore] = [
        PgVectorStore(postgres_url, table="same_results"),
        EmbeddedVectorStore(None),
    ]
    for store in stores:
        store.add(ids, vectors, meta)
        store.persist()
    queries = unit(5, 24, seed=1)
    for q in queries:
        exact = [h.id for h in stores[1].search(q, k=5, filter={"patient_id": "p2"})]
        got = stores[0].search(q, k=5, filter={"patient_id": "p2"})
        assert [h.id for h in got] == exact
        assert all(h.metadata["patient_id"] == "p2" for h in got)
        assert got[0].vector is not None and got[0].vector.shape == (24,)
        embedded_top = stores[1].search(q, k=1)[0]
        pg_top = stores[0].search(q, k=1)[0]
        assert pg_top.id == embedded_top.id and pg_top.score == pytest.approx(embedded_top.score, abs=1e-5)
    assert [s.count() for s in stores] == [300, 300]
    assert [s.count({"patient_id": "p1", "n": 5}) for s in stores] == [1, 1]
    for store in stores:
        store.close()


def test_upsert_reopen_and_dimension_checks(postgres_url: str) -> None:
    vectors = unit(3, 8, seed=2)
    with PgVectorStore(postgres_url, table="upserts") as store:
        store.add(["a", "b", "c"], vectors, [{"n": 1}, {"n": 2}, {"n": 3}])
        store.add(["a"], vectors[2:3], [{"n": 9}])
        assert store.count() == 3 and store.count({"n": 1}) == 0
    with open_store(None, database_url=postgres_url, table="upserts") as store:
        assert isinstance(store, PgVectorStore) and store.dim == 8
        top = store.search(vectors[2], k=2)
        assert {h.id for h in top} == {"a", "c"} and top[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(VectorStoreError, match="dimension 5"):
            store.add(["d"], np.ones((1, 5)), [{}])
    with pytest.raises(VectorStoreError, match="holds dimension 8, not 16"):
        PgVectorStore(postgres_url, table="upserts", dim=16)
    with pytest.raises(VectorStoreError, match="invalid table name"):
        PgVectorStore(postgres_url, table="x; DROP TABLE upserts")


def test_bad_url_and_unreachable_server() -> None:
    with pytest.raises(VectorStoreError, match="postgresql:// URL"):
        PgVectorStore("sqlite:///x.db")
    port = _free_port()
    with pytest.raises(
        VectorStoreError, match=f"cannot connect to Postgres at postgresql://u:\\*\\*\\*@127.0.0.1:{port}"
    ):
        PgVectorStore(f"postgresql://u:secret@127.0.0.1:{port}/db?connect_timeout=2")


def test_image_index_on_pgvector(tmp_path: Path, postgres_url: str) -> None:
    colors = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (90, 90, 90)]
    items = [
        LoadedImage(
            id=f"Media/{i}",
            image=solid(c),
            metadata={"fhir_ref": f"Media/{i}", "path": f"Media/{i}", "patient_id": "p1"},
        )
        for i, c in enumerate(colors)
    ]
    with ImageIndex.open(
        tmp_path / "idx", encoder=FakeEncoder(), database_url=postgres_url, table="images_idx", create=True
    ) as index:
        index.add(items)
        index.persist()
    with ImageIndex.open(tmp_path / "idx", encoder=FakeEncoder(), database_url=postgres_url) as index:
        assert index.count({"patient_id": "p1"}) == 4
        hit = index.search_image(solid(colors[2]), k=1, filter={"patient_id": "p1"})[0]
        assert hit.fhir_ref == "Media/2" and hit.line().endswith("[Media/2]")
    with pytest.raises(ImageIndexError, match="Postgres"):
        ImageIndex.open(tmp_path / "idx", encoder=FakeEncoder())
