"""The real loading path on a tiny random SigLIP: encoder, index, search, zero-shot labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clinicflow.tools.images import EncoderLoadError, ImageEncoder, ImageIndex, index_folder
from tests.unit.images.fakes import write_dicom

from .tiny_siglip import IMAGE_SIZE, make_tiny_siglip


def random_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50 + 3 * i, 3), dtype=np.uint8)) for i in range(n)
    ]


def test_loads_lazily_once_and_normalises(tiny_siglip: Path) -> None:
    encoder = ImageEncoder(tiny_siglip)
    assert encoder._loaded is None
    loaded = encoder.load()
    assert encoder.load() is loaded and encoder.dim == 32 and encoder.device == "cpu"
    assert loaded.dtype == torch.float32 and (loaded.preprocess.height, loaded.preprocess.width) == (32, 32)
    images = encoder.encode_images(random_images(5))
    texts = encoder.encode_texts(["chest x-ray", "skin rash on the left arm"])
    assert images.shape == (5, 32) and texts.shape == (2, 32) and images.dtype == np.float32
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert encoder.encode_images([]).shape == (0, 32)


def test_matches_the_transformers_reference(tiny_siglip: Path) -> None:
    """Our batched path gives SiglipModel's own logits for processor inputs."""
    from transformers import AutoModel, AutoProcessor

    images = random_images(4, seed=3)
    texts = ["chest x-ray", "a photo of a cat", "normal lung ct"]
    model = AutoModel.from_pretrained(tiny_siglip).eval()
    processor = AutoProcessor.from_pretrained(tiny_siglip)
    inputs = processor(text=texts, images=images, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        reference = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    encoder = ImageEncoder(tiny_siglip, batch_size=3)
    pre = encoder.load().preprocess
    ours_px = pre.to_pixels(np.stack([pre.resize(im) for im in images]), torch.device("cpu"), torch.float32)
    assert torch.allclose(ours_px, inputs["pixel_values"], atol=1e-5)
    scale, bias = encoder.logit_params()
    assert scale == pytest.approx(10.0) and bias == pytest.approx(-5.0)
    logits = scale * encoder.encode_images(images) @ encoder.encode_texts(texts).T + bias
    assert np.allclose(logits, reference.logits_per_image.numpy(), atol=1e-4)


def test_batching_does_not_change_embeddings(tiny_siglip: Path) -> None:
    images = random_images(7, seed=5)
    one = ImageEncoder(tiny_siglip, batch_size=1).encode_images(images)
    many = ImageEncoder(tiny_siglip, batch_size=4).encode_images(images)
    assert np.allclose(one, many, atol=1e-5)


def test_wrong_encoder_path_names_the_path(tmp_path: Path, tiny_siglip: Path) -> None:
    missing = tmp_path / "no-such-medsiglip"
    with pytest.raises(EncoderLoadError, match=str(missing)) as err:
        ImageEncoder(missing)
    assert err.value.path == str(missing) and "no such directory" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderLoadError, match=f"{empty}.*no config.json"):
        ImageEncoder(empty)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(EncoderLoadError, match="not a directory"):
        ImageEncoder(tmp_path / "weights.bin")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderLoadError, match=f"{other}.*model_type is 'bert'"):
        ImageEncoder(other).load()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_siglip / "config.json").read_text())
    with pytest.raises(EncoderLoadError, match=f"{broken}.*weights"):
        ImageEncoder(broken).load()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(random_images(6, seed=11)):
        image.save(folder / f"img{i}.png" if i % 2 else folder / f"img{i}.jpg", quality=95)
    raw = (np.arange(IMAGE_SIZE * IMAGE_SIZE, dtype=np.uint16).reshape(IMAGE_SIZE, IMAGE_SIZE) * 3) % 900
    write_dicom(folder / "ct.dcm", raw, center=300, width=400, slope=1, intercept=-100)
    write_dicom(folder / "cr.dcm", raw[::-1].copy(), photometric="MONOCHROME1")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return folder


def test_image_to_image_returns_the_query_first(
    tmp_path: Path, tiny_siglip: Path, image_folder: Path
) -> None:
    with ImageIndex.open(tmp_path / "index", encoder=tiny_siglip, create=True) as index:
        report = index_folder(index, image_folder)
        assert report.indexed == 8 and [Path(s.name).name for s in report.skipped] == ["corrupt.jpg"]
    with ImageIndex.open(tmp_path / "index") as index:
        assert index.count() == 8 and index.encoder.name == str(tiny_siglip)
        for path in sorted(p for p in image_folder.iterdir() if p.name != "corrupt.jpg"):
            hits = index.search_image(path, k=3)
            assert hits[0].path == str(path.resolve()), path.name
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].line().endswith(f"[image: {path.resolve()}]")


def test_text_search_and_zero_shot(tmp_path: Path, tiny_siglip: Path, image_folder: Path) -> None:
    with ImageIndex.open(tmp_path / "index", encoder=tiny_siglip, create=True) as index:
        index_folder(index, image_folder, patient_id="p1")
        hits = index.search_text("chest x-ray with pneumothorax", k=4)
        assert len(hits) == 4 and all(h.metadata["patient_id"] == "p1" for h in hits)
        encoder = index.encoder
        query = encoder.encode_texts(["chest x-ray with pneumothorax"])[0]
        stored = {h.id: np.asarray(h.vector) for h in index.search_vector(query, k=8)}
        expected = sorted(stored, key=lambda i: -float(np.dot(stored[i], query)))[:4]
        assert [h.id for h in hits] == expected
        labels = ["normal chest x-ray", "pneumothorax", "skin rash"]
        labelled = index.label_hits(hits, labels)
        query_scores = index.label_image(image_folder / "img1.png", labels, mode="sigmoid")
    for hit in labelled:
        assert sum(s.probability for s in hit.labels) == pytest.approx(1.0)
        assert {s.label for s in hit.labels} == set(labels)
    assert all(0 < s.probability < 1 for s in query_scores)
    scale, bias = encoder.logit_params()
    image_vec = encoder.encode_images([Image.open(image_folder / "img1.png")])[0]
    text_vecs = encoder.encode_texts(labels)
    for s in query_scores:
        logit = scale * float(image_vec @ text_vecs[labels.index(s.label)]) + bias
        assert s.logit == pytest.approx(logit, abs=1e-4)


def test_vision_only_checkpoint_encodes_images_not_text(tmp_path: Path) -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    SiglipVisionModel(config).save_pretrained(tmp_path / "vision")
    encoder = ImageEncoder(tmp_path / "vision")
    vectors = encoder.encode_images(random_images(2))
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    with pytest.raises(EncoderLoadError, match="vision-only checkpoint: text search is unavailable"):
        encoder.encode_texts(["chest"])
    with pytest.raises(EncoderLoadError, match="vision-only"):
        encoder.logit_params()


def test_sentencepiece_tokenizer_layout(tmp_path: Path) -> None:
    """google/medsiglip-448 ships SigLIP's SentencePiece tokenizer (spiece.model); that path loads too."""
    pytest.importorskip("sentencepiece", reason="SiglipTokenizer needs `pip install sentencepiece`")
    pytest.importorskip("google.protobuf", reason="SiglipTokenizer needs `pip install protobuf`")
    from transformers import AutoModel, AutoTokenizer

    path = make_tiny_siglip(tmp_path / "spm" / "medsiglip-tiny", sentencepiece=True)
    assert (path / "spiece.model").exists()
    encoder = ImageEncoder(path)
    texts = ["chest x-ray with pneumothorax", "normal lung"]
    ours = encoder.encode_texts(texts)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(tokenizer).__name__ == "SiglipTokenizer"
    ids = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        reference = AutoModel.from_pretrained(path).get_text_features(input_ids=ids)
    reference = getattr(reference, "pooler_output", reference)
    assert np.allclose(ours, torch.nn.functional.normalize(reference, dim=-1).numpy(), atol=1e-5)


def test_bfloat16_path_agrees_with_float32(tiny_siglip: Path) -> None:
    """The dtype CUDA uses (bfloat16), run on CPU: same embeddings up to bf16 rounding."""
    images = random_images(3, seed=9)
    fp32 = ImageEncoder(tiny_siglip, device="cpu").encode_images(images)
    bf16_encoder = ImageEncoder(tiny_siglip, device="cpu", dtype="bfloat16")
    bf16 = bf16_encoder.encode_images(images)
    assert bf16_encoder.load().dtype == torch.bfloat16 and bf16.dtype == np.float32
    assert np.all(np.sum(fp32 * bf16, axis=1) > 0.99)
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1, atol=1e-5)
