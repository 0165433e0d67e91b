"""Image blocks of chat messages to PIL images and data URLs, and the errors for what is refused."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from PIL import Image

from clinicflow.model import ModelInputError
from clinicflow.model.image_inputs import image_data_url, is_image_block, load_image

SIZE = (6, 4)
COLOR = (200, 30, 90)


def encoded(fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", SIZE, COLOR).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def png_path(tmp_path: Path) -> Path:
    path = tmp_path / "cxr 1.png"
    path.write_bytes(encoded())
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def accepted_blocks(path: Path) -> dict[str, dict[str, Any]]:
    data = b64(encoded())
    return {
        "langchain base64": {"type": "image", "base64": data, "mime_type": "image/png"},
        "langchain v0 base64": {
            "type": "image",
            "source_type": "base64",
            "data": data,
            "mime_type": "image/png",
        },
        "langchain data url": {"type": "image", "url": f"data:image/png;base64,{data}"},
        "langchain file url": {"type": "image", "url": path.as_uri()},
        "openai data url": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        "openai percent-encoded data url": {
            "type": "image_url",
            "image_url": {"url": f"data:image/png,{quote_from_bytes(encoded())}"},
        },
        "openai file url": {"type": "image_url", "image_url": {"url": path.as_uri()}},
        "openai local path": {"type": "image_url", "image_url": {"url": str(path)}},
        "openai url as a string": {"type": "image_url", "image_url": str(path)},
        "fhir attachment data": {
            "type": "image",
            "fhir_attachment": {"contentType": "image/png", "data": data, "title": "Chest X-ray"},
        },
        "fhir attachment data wrapped in lines": {
            "type": "image",
            "fhir_attachment": {"contentType": "image/png", "data": "\n".join([data[:20], data[20:]])},
        },
        "fhir attachment file url": {
            "type": "image",
            "fhir_attachment": {"contentType": "image/png", "url": path.as_uri()},
        },
        "fhir attachment absolute path": {
            "type": "image",
            "fhir_attachment": {"contentType": "image/png", "url": str(path)},
        },
    }


@pytest.mark.parametrize("shape", list(accepted_blocks(Path("/x.png"))))
def test_each_accepted_shape_gives_the_image(shape: str, png_path: Path) -> None:
    block = accepted_blocks(png_path)[shape]
    assert is_image_block(block)
    image = load_image(block)
    assert image.mode == "RGB" and image.size == SIZE
    assert image.getpixel((0, 0)) == COLOR


def test_a_data_url_carries_the_bytes_and_the_format_they_are_in(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.png"  # a JPEG with a misleading name: the bytes decide the type
    jpeg.write_bytes(encoded("JPEG"))
    url = image_data_url({"type": "image_url", "image_url": {"url": str(jpeg)}})
    header, data = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(data) == encoded("JPEG")


def test_text_blocks_are_not_images() -> None:
    assert not is_image_block({"type": "text", "text": "hi"})
    assert not is_image_block("data:image/png;base64,AAAA")


def not_an_image_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("Patient reports chest pain.")
    return path


def dicom_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    return path


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.org/cxr.png"}},
            r"image_url 'https://example.org/cxr.png' is a web address; the model layer makes no "
            r"network requests, so pass the image inline \(base64 or a data: URL\) or as a local file path",
        ),
        (
            {"type": "image", "url": "http://pacs.local/img/1"},
            "image block url 'http://pacs.local/img/1' is a web address",
        ),
        (
            {"type": "image", "fhir_attachment": {"contentType": "image/png", "url": "Binary/123"}},
            r"FHIR Attachment \(image/png\) points to 'Binary/123', which the model layer does not fetch or "
            r"resolve; put the image's base64 in Attachment.data",
        ),
        (
            {"type": "image", "fhir_attachment": {"url": "https://fhir.example.org/Binary/9"}},
            "points to 'https://fhir.example.org/Binary/9', which the model layer does not fetch",
        ),
        (
            {"type": "image", "fhir_attachment": {"contentType": "image/png", "title": "CXR"}},
            r"FHIR Attachment 'CXR' \(image/png\) has neither data nor url",
        ),
        (
            {"type": "image", "fhir_attachment": "not an attachment"},
            "fhir_attachment must be a FHIR Attachment object",
        ),
        (
            {"type": "image", "base64": "not base64!", "mime_type": "image/png"},
            r"base64 image \(image/png\) is not valid base64",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
            r"image_url data URL 'data:image/png;base64,@@@' is not valid base64",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64"}},
            "has no ',' before its data",
        ),
        (
            {"type": "image", "base64": b64(b"plain text, not pixels"), "mime_type": "image/png"},
            r"base64 image \(image/png\) is not an image that can be read",
        ),
        (
            {"type": "image", "file_id": "file-abc"},
            "image file_id 'file-abc' refers to a provider's file store",
        ),
        (
            {"type": "image", "base64": b64(encoded()[:50]), "mime_type": "image/png"},
            r"base64 image \(image/png\) is not an image that can be read: .*truncated",
        ),
        ({"type": "image"}, "an image block needs base64"),
        ({"type": "image_url", "image_url": {}}, "an image_url block needs image_url.url"),
        (
            {"type": "image_url", "image_url": {"url": "s3://bucket/cxr.png"}},
            "has an unsupported scheme 's3'",
        ),
        (
            {"type": "image_url", "image_url": {"url": "file://pacs/share/cxr.png"}},
            "names another host",
        ),
        ({"type": "text", "text": "hi"}, "a content block of type 'text' is not an image"),
    ],
)
def test_refused_inputs_say_why(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        load_image(block)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.png"
    with pytest.raises(ModelInputError, match=f"image file {missing} \\(from image_url\\) cannot be read"):
        load_image({"type": "image_url", "image_url": {"url": str(missing)}})


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    path = not_an_image_file(tmp_path)
    with pytest.raises(ModelInputError, match=f"image file {path} is not an image that can be read"):
        load_image({"type": "image", "url": path.as_uri()})


def test_dicom_is_refused_with_the_way_to_render_it(tmp_path: Path) -> None:
    path = dicom_file(tmp_path)
    with pytest.raises(ModelInputError, match=r"is a DICOM file.*clinicflow\.tools\.images"):
        image_data_url({"type": "image_url", "image_url": {"url": str(path)}})


def test_a_long_data_url_is_shortened_in_the_error() -> None:
    url = "data:image/png;base64," + b64(b"x" * 300)
    expected = rf"\.\.\. \({len(url)} characters\) is not an image that can be read: not in a known format"
    with pytest.raises(ModelInputError, match=expected) as caught:
        load_image({"type": "image_url", "image_url": {"url": url}})
    assert url not in str(caught.value)
