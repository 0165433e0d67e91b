"""The image index over a fake encoder: manifest, zero-shot maths, cited lines, mismatched encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clinicflow.tools.images import (
    EmbeddedVectorStore,
    ImageHit,
    ImageIndex,
    ImageIndexError,
    LoadedImage,
    zero_shot,
)

from .fakes import FakeEncoder, solid


def test_zero_shot_softmax_and_sigmoid_follow_siglip_logits() -> None:
    img = np.array([[1.0, 0.0], [0.6, 0.8]])
    txt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = ["a", "b", "c"]
    soft = zero_shot(img, txt, labels, scale=10.0, bias=-5.0, mode="softmax")
    logits = 10.0 * img @ txt.T - 5.0
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for row, exp_row in zip(soft, expected, strict=True):
        got = {s.label: s.probability for s in row}
        assert got == pytest.approx(dict(zip(labels, exp_row, strict=True)))
        assert [s.probability for s in row] == sorted((s.probability for s in row), reverse=True)
    assert soft[0][0].label == "a" and soft[1][0].label == "b"
    sig = zero_shot(img, txt, labels, scale=10.0, bias=-5.0, mode="sigmoid")
    assert {s.label: s.logit for s in sig[0]} == pytest.approx({"a": 5.0, "b": -5.0, "c": -15.0})
    assert {s.label: s.probability for s in sig[0]}["a"] == pytest.approx(1 / (1 + np.exp(-5.0)))
    with pytest.raises(ValueError, match="mode"):
        zero_shot(img, txt, labels, 1.0, 0.0, mode="argmax")  # type: ignore[arg-type]


def test_hit_lines_cite_path_and_fhir_reference() -> None:
    record = ImageHit(
        id="Media/1",
        score=0.31234,
        path="Media/1",
        fhir_ref="Media/1",
        metadata={"date": "2021-03-04T10:00:00Z", "title": "Chest X-ray", "modality": "XR"},
    )
    assert record.line() == "2021-03-04 Chest X-ray (XR) similarity 0.312 [Media/1]"
    library = ImageHit(id="file:/x/cxr.png", score=0.5, path="/x/cxr.png", fhir_ref=None, metadata={})
    assert library.line() == "cxr.png similarity 0.500 [image: /x/cxr.png]"


def items(n: int) -> list[LoadedImage]:
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 0), (0, 90, 160)]
    return [
        LoadedImage(
            id=f"img{i}", image=solid(colors[i]), metadata={"path": f"/d/img{i}.png", "name": f"img{i}"}
        )
        for i in range(n)
    ]


def test_open_create_manifest_and_reopen(tmp_path: Path) -> None:
    with pytest.raises(ImageIndexError, match="no image index"):
        ImageIndex.open(tmp_path / "idx", encoder=FakeEncoder())
    enc = FakeEncoder()
    with ImageIndex.open(tmp_path / "idx", encoder=enc, create=True) as index:
        index.add(items(5))
        index.persist()
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert manifest == {"encoder": "fake-encoder", "dim": 48, "store": "embedded"}
    with ImageIndex.open(tmp_path / "idx", encoder=FakeEncoder()) as index:
        assert index.count() == 5
        hits = index.search_image(items(5)[3].image, k=5)
        assert hits[0].id == "img3" and len(hits) == 5
        labelled = index.label_hits(hits[:2], ["chest x-ray", "skin", ""])
        assert [len(h.labels) for h in labelled] == [2, 2]
        assert sum(s.probability for s in labelled[0].labels) == pytest.approx(1.0)
        assert "labels " in labelled[0].line()


def test_encoder_dimension_mismatch_is_reported(tmp_path: Path) -> None:
    index = ImageIndex(FakeEncoder(), EmbeddedVectorStore(None, dim=12))
    with pytest.raises(ImageIndexError, match="12-dimensional"):
        index.search_text("chest")


def test_text_search_and_empty_labels() -> None:
    index = ImageIndex(FakeEncoder(), EmbeddedVectorStore(None))
    index.add(items(3))
    assert len(index.search_text("chest x-ray", k=2)) == 2
    with pytest.raises(ValueError, match="empty"):
        index.search_text("   ")
    with pytest.raises(ValueError, match="label"):
        index.label_image(items(1)[0].image, [" ", ""])
    assert index.label_image(items(1)[0].image, ["a", "b"])[0].label in {"a", "b"}
