"""Images in chat messages: the content blocks the model layer reads, turned into PIL images or data URLs.

An image is one block of a message's content list, in any of these shapes:

- langchain standard blocks: ``{"type": "image", "base64": "<base64>", "mime_type": "image/png"}``
  (or the older ``"source_type": "base64", "data": ...``) or
  ``{"type": "image", "url": "data:...|file:///...|/local/path"}``;
- OpenAI parts: ``{"type": "image_url", "image_url": {"url": "data:...|file:///...|/local/path"}}``
  (``"image_url": "<url>"`` too);
- a FHIR R4 Attachment: ``{"type": "image", "fhir_attachment": {"contentType": "image/png", "data":
  "<base64>"}}``, or with ``"url": "file:///..."`` (or an absolute path) in place of ``data``.

The model layer fetches nothing over the network: an http(s) URL, a FHIR reference such as
``Binary/123`` or a langchain ``file_id`` is refused with a `ModelInputError` that says what to pass
instead, as are unreadable files, bad base64 and bytes that are not an image. DICOM is not read here
(its reader lives in `clinicflow.tools.images`, a layer the model layer may not import): render it to
PNG first with that tool, which applies the windowing.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit
from urllib.request import url2pathname

from clinicflow.model.errors import ModelInputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ImageBytes", "image_bytes", "image_data_url", "is_image_block", "load_image"]

_IMAGE_TYPES = ("image", "image_url")
_PASS_INSTEAD = "pass the image inline (base64 or a data: URL) or as a local file path"


@dataclass(frozen=True)
class ImageBytes:
    """The encoded bytes of one image block, and a short name for it in error messages."""

    data: bytes
    label: str

    def open(self) -> Image.Image:
        """The decoded image in RGB; raises ModelInputError if the bytes are not an image."""
        return self._decode()[0]

    def mime_type(self) -> str:
        """The media type of the image format the bytes are in (checked by decoding them)."""
        from PIL import Image

        return Image.MIME.get(self._decode()[1], "application/octet-stream")

    def _decode(self) -> tuple[Image.Image, str]:
        from PIL import Image, UnidentifiedImageError

        if self.data[128:132] == b"DICM":
            raise ModelInputError(
                f"{self.label} is a DICOM file, which the model layer does not read; render it to PNG "
                "with the images tool (clinicflow.tools.images) and pass that"
            )
        try:
            with Image.open(io.BytesIO(self.data)) as image:
                image.load()
                return image.convert("RGB"), image.format or ""
        except UnidentifiedImageError as exc:
            raise ModelInputError(
                f"{self.label} is not an image that can be read: not in a known format (PNG, JPEG, ...)"
            ) from exc
        except (Image.DecompressionBombError, OSError, ValueError) as exc:
            raise ModelInputError(f"{self.label} is not an image that can be read: {exc}") from exc


def is_image_block(part: Any) -> bool:
    """True for a content block that carries an image (`image` or `image_url`)."""
    return isinstance(part, Mapping) and part.get("type") in _IMAGE_TYPES


def load_image(block: Mapping[str, Any]) -> Image.Image:
    """The RGB image an image block carries; raises ModelInputError naming the input if it cannot."""
    return image_bytes(block).open()


def image_data_url(block: Mapping[str, Any]) -> str:
    """The image of a block as a base64 data URL of its own bytes (decoded once to check them)."""
    raw = image_bytes(block)
    return f"data:{raw.mime_type()};base64,{base64.b64encode(raw.data).decode('ascii')}"


def image_bytes(block: Mapping[str, Any]) -> ImageBytes:
    """The encoded bytes an image block carries, read from inline data or a local file."""
    kind = block.get("type")
    if kind == "image_url":
        url = block.get("image_url")
        if isinstance(url, Mapping):
            url = url.get("url")
        if not isinstance(url, str) or not url:
            raise ModelInputError("an image_url block needs image_url.url (a data: URL or a local file)")
        return _from_url(url, "image_url")
    if kind != "image":
        raise ModelInputError(f"a content block of type {kind!r} is not an image")
    attachment = block.get("fhir_attachment")
    if attachment is not None:
        return _from_attachment(attachment)
    if block.get("base64") is not None:
        return _from_base64(block["base64"], f"base64 image ({block.get('mime_type') or 'no mime_type'})")
    if block.get("source_type") == "base64" and block.get("data") is not None:
        return _from_base64(block["data"], f"base64 image ({block.get('mime_type') or 'no mime_type'})")
    if isinstance(block.get("url"), str) and block["url"]:
        return _from_url(block["url"], "image block url")
    if block.get("file_id") is not None:
        raise ModelInputError(
            f"image file_id {block['file_id']!r} refers to a provider's file store, which the model layer "
            f"does not read; {_PASS_INSTEAD}"
        )
    raise ModelInputError(
        "an image block needs base64 (with mime_type), a url (data: or file:) or a fhir_attachment"
    )


def _from_attachment(attachment: Any) -> ImageBytes:
    if not isinstance(attachment, Mapping):
        raise ModelInputError("fhir_attachment must be a FHIR Attachment object")
    title = f" {attachment['title']!r}" if attachment.get("title") else ""
    label = f"FHIR Attachment{title} ({attachment.get('contentType') or 'no contentType'})"
    if attachment.get("data") is not None:
        return _from_base64(attachment["data"], label)
    url = attachment.get("url")
    if not isinstance(url, str) or not url:
        raise ModelInputError(f"{label} has neither data nor url; put the image's base64 in Attachment.data")
    if urlsplit(url).scheme.lower() == "file" or url.startswith(("/", "~")):
        return _from_url(url, label)
    raise ModelInputError(
        f"{label} points to {_short(url)}, which the model layer does not fetch or resolve; put the "
        "image's base64 in Attachment.data, or give a file: url or an absolute path"
    )


def _from_url(url: str, where: str) -> ImageBytes:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "data":
        return _from_data_url(url, where)
    if scheme == "file":
        location = urlsplit(url)
        if location.netloc not in ("", "localhost"):
            raise ModelInputError(f"{where} {url!r} names another host; {_PASS_INSTEAD}")
        return _from_file(Path(url2pathname(unquote(location.path))), where)
    if scheme in ("http", "https"):
        raise ModelInputError(
            f"{where} {_short(url)} is a web address; the model layer makes no network requests, so "
            f"{_PASS_INSTEAD}"
        )
    if "://" in url:
        raise ModelInputError(f"{where} {_short(url)} has an unsupported scheme {scheme!r}; {_PASS_INSTEAD}")
    return _from_file(Path(url).expanduser(), where)


def _from_data_url(url: str, where: str) -> ImageBytes:
    header, comma, payload = url.partition(",")
    label = f"{where} data URL {_short(url)}"
    if not comma:
        raise ModelInputError(f"{label} has no ',' before its data")
    if header.lower().endswith(";base64"):
        return _from_base64(payload, label)
    return ImageBytes(unquote_to_bytes(payload), label)


def _from_base64(data: Any, label: str) -> ImageBytes:
    if not isinstance(data, str | bytes):
        raise ModelInputError(f"{label}: the base64 data must be a string")
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelInputError(f"{label} is not valid base64: {exc}") from exc
    if not raw:
        raise ModelInputError(f"{label} is empty")
    return ImageBytes(raw, label)


def _from_file(path: Path, where: str) -> ImageBytes:
    label = f"image file {path}"
    try:
        return ImageBytes(path.read_bytes(), label)
    except OSError as exc:
        raise ModelInputError(f"{label} (from {where}) cannot be read: {exc.strerror or exc}") from exc


def _short(text: str, limit: int = 48) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"
