"""The embedded vector store: exact cosine top-k, filters, upserts, persistence, bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from clinicflow.tools.images import EmbeddedVectorStore, VectorStore, VectorStoreError, open_store


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(matrix: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    q = q / np.linalg.norm(q)
    scores = [float(np.dot(row, q)) for row in matrix]
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_top_k_matches_brute_force(tmp_path: Path, where: str) -> None:
    vectors = random_unit(500, 24)
    store = EmbeddedVectorStore(tmp_path / "s" if where == "disk" else None)
    assert isinstance(store, VectorStore)
    store.add([f"v{i}" for i in range(500)], vectors, [{"n": i} for i in range(500)])
    q = random_unit(1, 24, seed=1)[0]
    hits = store.search(q, k=7)
    assert [h.id for h in hits] == [f"v{i}" for i in brute_force(vectors, q, 7)]
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert hits[0].metadata == {"n": int(hits[0].id[1:])}
    assert hits[0].vector is not None
    assert np.allclose(hits[0].vector, vectors[int(hits[0].id[1:])], atol=1e-6)
    assert store.search(vectors[42], k=1)[0].id == "v42"


def test_filter_restricts_to_matching_metadata(tmp_path: Path) -> None:
    vectors = random_unit(60, 8)
    store = EmbeddedVectorStore(tmp_path / "s")
    meta = [{"patient_id": "p1" if i % 3 == 0 else "p2", "source": "file", "n": i} for i in range(60)]
    store.add([f"v{i}" for i in range(60)], vectors, meta)
    q = vectors[1]
    hits = store.search(q, k=100, filter={"patient_id": "p1"})
    assert len(hits) == 20 and all(h.metadata["patient_id"] == "p1" for h in hits)
    assert [h.id for h in hits[:5]] == [f"v{i * 3}" for i in brute_force(vectors[::3], q, 5)]
    assert store.count({"patient_id": "p1", "source": "file"}) == 20
    assert store.count({"patient_id": "p1", "n": 3}) == 1
    assert store.count({"n": "3"}) == 0
    assert store.search(q, k=3, filter={"patient_id": "nobody"}) == []


def test_persist_reopen_and_upsert(tmp_path: Path) -> None:
    vectors = random_unit(10, 16)
    with EmbeddedVectorStore(tmp_path / "s") as store:
        store.add([f"v{i}" for i in range(10)], vectors, [{"n": i} for i in range(10)])
        store.persist()
    with EmbeddedVectorStore(tmp_path / "s") as store:
        assert store.count() == 10 and store.dim == 16
        assert store.search(vectors[3], k=1)[0].id == "v3"
        store.add(["v3", "v10"], np.stack([vectors[7], vectors[0]]), [{"n": 33}, {"n": 10}])
        assert store.count() == 11
        top = store.search(vectors[7], k=2)
        assert {h.id for h in top} == {"v3", "v7"} and top[0].score == pytest.approx(1.0, abs=1e-6)
        assert store.count({"n": 3}) == 0 and store.count({"n": 33}) == 1
    with EmbeddedVectorStore(tmp_path / "s") as store:
        assert store.count() == 11
        replaced = next(h for h in store.search(vectors[7], k=2) if h.id == "v3")
        assert replaced.metadata == {"n": 33} and replaced.score == pytest.approx(1.0, abs=1e-6)


def test_float16_storage(tmp_path: Path) -> None:
    vectors = random_unit(300, 32)
    store = EmbeddedVectorStore(tmp_path / "h", dtype="float16")
    store.add([f"v{i}" for i in range(300)], vectors, [{}] * 300)
    assert (tmp_path / "h" / "vectors.bin").stat().st_size == 300 * 32 * 2
    assert [h.id for h in store.search(vectors[5], k=1)] == ["v5"]
    store.close()
    assert EmbeddedVectorStore(tmp_path / "h").search(vectors[9], k=1)[0].id == "v9"


def test_bad_input_is_refused(tmp_path: Path) -> None:
    store = EmbeddedVectorStore(tmp_path / "s", dim=4)
    with pytest.raises(VectorStoreError, match="dimension 3"):
        store.add(["a"], np.ones((1, 3)), [{}])
    with pytest.raises(VectorStoreError, match="differ in length"):
        store.add(["a", "b"], np.ones((1, 4)), [{}])
    with pytest.raises(VectorStoreError, match="NaN"):
        store.add(["a"], np.full((1, 4), np.nan), [{}])
    with pytest.raises(VectorStoreError, match="JSON"):
        store.add(["a"], np.ones((1, 4)), [{"x": object()}])
    with pytest.raises(VectorStoreError, match="query vector has dimension 5"):
        store.search(np.ones(5))
    with pytest.raises(VectorStoreError, match="k must be positive"):
        store.search(np.ones(4), k=0)
    assert store.count() == 0 and store.search(np.ones(4)) == []
    store.close()
    with pytest.raises(VectorStoreError, match="holds dimension 4, not 8"):
        EmbeddedVectorStore(tmp_path / "s", dim=8)


def test_damaged_vector_file_is_reported(tmp_path: Path) -> None:
    with EmbeddedVectorStore(tmp_path / "s") as store:
        store.add(["a", "b"], random_unit(2, 8), [{}, {}])
    (tmp_path / "s" / "vectors.bin").write_bytes(b"\0" * 10)
    with pytest.raises(VectorStoreError, match="damaged"):
        EmbeddedVectorStore(tmp_path / "s")


def test_open_store_defaults_to_embedded(tmp_path: Path) -> None:
    store = open_store(tmp_path / "x", dim=8)
    assert isinstance(store, EmbeddedVectorStore) and store.dim == 8
    store.close()
