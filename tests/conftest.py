"""Fixtures shared by the whole suite: small real encoded images."""

from __future__ import annotations

import io

import pytest


def _encode(fmt: str) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (5, 4))
    img.putdata([(16 * x, 40 * y, 200) for y in range(4) for x in range(5)])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    """A 5x4 JPEG made by Pillow."""
    return _encode("JPEG")


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    """A 5x4 PNG made by Pillow."""
    return _encode("PNG")
