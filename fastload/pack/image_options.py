"""Re-encode image fields while packing: cap the longer side, JPEG quality, or store raw pixels.

``fastload pack --max-side N --jpeg-quality Q --image-format keep|jpeg|raw`` (FFCV's
``max_resolution``, ``jpeg_quality`` and ``write_mode``):

* ``keep`` (default): the stored bytes are the file's own, except images whose longer side
  exceeds ``max_side``: those are resized and re-encoded (JPEG at ``jpeg_quality`` when they were
  JPEGs, PNG otherwise);
* ``jpeg``: every image becomes a JPEG at ``jpeg_quality`` (RGB or grayscale; alpha is dropped);
* ``raw``: every image becomes its decoded pixels (``fastload.image.decode.encode_raw``: a
  baseline uncompressed TIFF, a fixed 144-byte header then HWC uint8 RGB), which the loader reads
  without decoding: for small images, where the decode would cost more than the bytes.

Resizing keeps the aspect ratio with Pillow's LANCZOS filter (after a DCT-domain ``draft`` for
JPEGs, which keeps at least twice the target size). An image that Pillow cannot decode is a bad
row: an error, or skipped under ``on_error="skip"``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError
from ..format.schema import Field, Schema
from ..image.decode import JPEG_SOI, encode_raw

IMAGE_FORMATS = ("keep", "jpeg", "raw")


@dataclass(frozen=True)
class ImageOptions:
    """How pack stores image fields (all defaults: bytes as they are)."""

    max_side: int | None = None
    jpeg_quality: int = 90
    image_format: str = "keep"

    def __post_init__(self) -> None:
        if self.max_side is not None and (isinstance(self.max_side, bool) or not isinstance(self.max_side, int)
                                          or self.max_side < 1):
            raise ValueError(f"max_side must be a positive number of pixels or None, not {self.max_side!r}")
        if isinstance(self.jpeg_quality, bool) or not isinstance(self.jpeg_quality, int) \
                or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer in 1..100, not {self.jpeg_quality!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, not {self.image_format!r}")

    @property
    def active(self) -> bool:
        """False when images are stored exactly as given."""
        return self.max_side is not None or self.image_format != "keep"

    def to_json(self) -> dict[str, Any]:
        return {"max_side": self.max_side, "jpeg_quality": self.jpeg_quality, "image_format": self.image_format}

    def schema_for(self, schema: Schema) -> Schema:
        """The stored schema: image fields become ``image[jpeg]`` under ``jpeg`` and ``image``
        (any) under ``raw``; other formats are unchanged."""
        if not self.active:
            return schema
        images = [f for f in schema if f.kind == "image"]
        if not images:
            raise SchemaError(f"image options (max_side, image_format) were given, but the schema "
                              f"({schema.describe()}) has no image field")
        if self.image_format == "keep":
            return schema
        fmt = "jpeg" if self.image_format == "jpeg" else "any"
        return Schema(tuple(Field(f.name, "image", image_format=fmt) if f.kind == "image" else f for f in schema))

    def convert(self, data: Any) -> bytes:
        """One stored image value as this option set stores it; raises ValueError when it does not decode."""
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            return data  # not bytes: the schema check reports it as a bad row
        if self.image_format == "keep" and self.max_side is None:
            return data
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(data))
            was_jpeg = data.startswith(JPEG_SOI)
            w, h = img.size
            target = None
            if self.max_side is not None and max(w, h) > self.max_side:
                s = self.max_side / max(w, h)
                target = (max(1, round(w * s)), max(1, round(h * s)))
            if target is None and self.image_format == "keep":
                return data
            if target is not None and was_jpeg:
                img.draft(img.mode, (target[0] * 2, target[1] * 2))  # DCT-domain reduction, >= 2x
            img.load()
        except Image.UnidentifiedImageError:
            raise ValueError("cannot decode image: not a format Pillow can read, or corrupt") from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
            raise ValueError(f"cannot decode image: {type(exc).__name__}: {exc}") from None
        as_jpeg = self.image_format == "jpeg" or (self.image_format == "keep" and was_jpeg)
        if self.image_format == "raw":
            img = img.convert("RGB")
        elif as_jpeg and img.mode not in ("RGB", "L"):
            img = img.convert("L" if img.mode == "1" else "RGB")  # JPEG holds RGB or grayscale
        if target is not None:
            img = img.resize(target, Image.Resampling.LANCZOS)
        if self.image_format == "raw":
            import numpy as np

            return encode_raw(np.asarray(img))
        buf = io.BytesIO()
        if as_jpeg:
            img.save(buf, format="JPEG", quality=self.jpeg_quality)
        else:
            img.save(buf, format="PNG")  # keep: a resized PNG/GIF/WebP/... stays lossless
        return buf.getvalue()

    def apply(self, schema: Schema, columns: dict[str, Any], n: int) -> tuple[dict[str, Any], dict[int, str]]:
        """Columns with image fields converted, and the rows whose image did not decode."""
        bad: dict[int, str] = {}
        out = dict(columns)
        for f in schema:
            if f.kind != "image" or f.name not in columns:
                continue
            values = list(columns[f.name])
            for row in range(n):
                try:
                    values[row] = self.convert(values[row])
                except ValueError as exc:
                    bad[row] = f"field {f.name!r}: {exc}"
            out[f.name] = values
        return out, bad
