"""The image operations a loader applies per field: small frozen, validated descriptions.

They describe *what* to do; :mod:`fastload.image.pipeline` checks a list of them, fuses them into
one plan per batch, and :mod:`fastload._kernels.resample` does the pixel work. All sizes are
``int`` (square) or ``(height, width)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DTYPES = ("float32", "float16")
LAYOUTS = ("NHWC", "NCHW")
DEVICES = ("cpu", "cuda")


def _size(value, what: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"{what}: size must be an int or (height, width), not {value!r}")
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{what}: size must be an int or (height, width), not {value!r}") from None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in (h, w)):
        raise ValueError(f"{what}: size must hold positive integers, not {value!r}")
    return int(h), int(w)


def _pair(value, what: str, low: float = 0.0) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of numbers, not {value!r}") from None
    if not (low < a <= b) or not math.isfinite(b):
        raise ValueError(f"{what} must be ({low} < min <= max), not {value!r}")
    return a, b


@dataclass(frozen=True)
class DecodeImage:
    """Where JPEGs are decoded: ``"cpu"`` (the default, in the workers) or ``"cuda"`` (nvJPEG
    through torchvision, for the whole batch in the main process; falls back to the CPU with a
    warning when torchvision or CUDA is missing)."""

    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"DecodeImage: device must be one of {DEVICES}, not {self.device!r}")


@dataclass(frozen=True)
class RandomResizedCrop:
    """A random box of ``scale`` x the image area and aspect ratio in ``ratio`` (log-uniform),
    resized to ``size``; torchvision's algorithm (10 tries, then a center crop)."""

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _size(self.size, "RandomResizedCrop"))
        object.__setattr__(self, "scale", _pair(self.scale, "RandomResizedCrop: scale"))
        if self.scale[1] > 1.0:
            raise ValueError(f"RandomResizedCrop: scale must lie in (0, 1], not {self.scale}")
        object.__setattr__(self, "ratio", _pair(self.ratio, "RandomResizedCrop: ratio"))


@dataclass(frozen=True)
class Resize:
    """Resize: an ``int`` sets the shorter side (keeps the aspect ratio; follow it with
    CenterCrop for a fixed batch shape), ``(height, width)`` sets both."""

    size: int | tuple[int, int]
    shorter_side: bool = field(init=False)  # True when size was one int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shorter_side", isinstance(self.size, int) and not isinstance(self.size, bool))
        object.__setattr__(self, "size", _size(self.size, "Resize"))


@dataclass(frozen=True)
class CenterCrop:
    """The centered ``size`` box (after a Resize, of the resized image). Alone, on an image
    smaller than ``size``, the box is clamped to the image and resized up to ``size``."""

    size: int | tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _size(self.size, "CenterCrop"))


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0.0 <= self.p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], not {self.p!r}")
        object.__setattr__(self, "p", float(self.p))


@dataclass(frozen=True)
class Normalize:
    """``(pixel / 255 - mean) / std`` per channel (torchvision's units: mean and std of [0, 1]
    pixels), stored as ``dtype`` (float32 or float16)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            try:
                vals = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"Normalize: {name} must be 3 numbers (R, G, B), not {value!r}") from None
            if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
                raise ValueError(f"Normalize: {name} must be 3 finite numbers (R, G, B), not {value!r}")
            object.__setattr__(self, name, vals)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize: std must be positive, not {self.std}")
        if self.dtype not in DTYPES:
            raise ValueError(f"Normalize: dtype must be one of {DTYPES}, not {self.dtype!r}")


@dataclass(frozen=True)
class ToTensor:
    """The batch layout: ``"NCHW"`` (channels first, what torchvision models take) or ``"NHWC"``
    (channels last). Without ToTensor a pipeline gives NHWC."""

    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"ToTensor: layout must be one of {LAYOUTS}, not {self.layout!r}")


OPERATIONS = (DecodeImage, RandomResizedCrop, Resize, CenterCrop, RandomHorizontalFlip, Normalize, ToTensor)
