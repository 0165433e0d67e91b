"""Test helpers: a hand-written PDF builder and a deterministic fake sentence encoder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def minimal_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A valid PDF 1.4 with one Helvetica text line per entry, one page per inner sequence."""
    n = len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        content = "BT /F1 11 Tf 14 TL 72 740 Td " + " ".join(f"({_escape(t)}) Tj T*" for t in lines) + " ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream".encode())
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def pdf_with_outline(
    pages: Sequence[Sequence[str]],
    outline: Sequence[tuple[str, int, str | None]] = (),
    *,
    title: str | None = None,
    password: str | None = None,
) -> bytes:
    """`minimal_pdf` plus bookmarks (title, 0-based page, parent title), a /Title and optional encryption."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(BytesIO(minimal_pdf(pages))))
    items: dict[str, Any] = {}
    for name, page, parent in outline:
        items[name] = writer.add_outline_item(
            title=name, page_number=page, parent=items[parent] if parent else None
        )
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    buf = BytesIO()
    writer.write(buf)
    return buf.getvalue()


class HashEmbedder:
    """Bag-of-words hashed into 256 dims, normalised; counts the texts it encoded."""

    name = "test-hash-bow"
    dim = 256

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)
