"""torchvision's geometry on Pillow images, transcribed for the tests: an independent reference.

torchvision cannot be imported on this project's machines, so its algorithm is written out here
from torchvision.transforms.functional (``_compute_resized_output_size``, ``center_crop``, the PIL
path of ``resize``) and ``transforms.RandomResizedCrop.get_params``, in plain Python scalars,
not from fastload's vectorised planner. The PIL path of torchvision's ``resize`` is
``img.resize((w, h), Image.BILINEAR)``: Pillow's antialiased resample (the filter widens with the
reduction) with ``reducing_gap=None``.
"""

from __future__ import annotations

import math

import numpy as np


def resized_size(height: int, width: int, size) -> tuple[int, int]:
    """``_compute_resized_output_size`` (no max_size): an int sets the shorter side, the longer one
    is ``int(size * long / short)``; a pair is (height, width)."""
    if not isinstance(size, int):
        return int(size[0]), int(size[1])
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w


def center_crop_offsets(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """``center_crop``'s top and left: ``int(round((side - crop) / 2.0))``, Python's round (half to even)."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def resize_center_crop(img, size, crop: int) -> np.ndarray:
    """``CenterCrop(crop)(Resize(size)(img))`` on a PIL RGB image: ``(crop, crop, 3)`` uint8."""
    from PIL import Image

    new_h, new_w = resized_size(img.height, img.width, size)
    if (new_h, new_w) != (img.height, img.width):
        img = img.resize((new_w, new_h), Image.BILINEAR, reducing_gap=None)
    top, left = center_crop_offsets(new_h, new_w, crop, crop)
    return np.asarray(img.crop((left, top, left + crop, top + crop)))


def random_resized_crop_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                               area_draws, ratio_draws, top_draw: float, left_draw: float) -> tuple[int, int, int, int]:
    """``RandomResizedCrop.get_params`` -> ``(i, j, h, w)`` for given draws: ``area_draws[t]`` and
    ``ratio_draws[t]`` are try t's uniforms in [0, 1) behind ``uniform_(scale)`` and
    ``uniform_(log ratio)``, and ``top_draw``/``left_draw`` those behind ``torch.randint`` (an
    integer in [0, n) is ``floor(u * n)``)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * area_draws[t])
        aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * ratio_draws[t])
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = math.floor(top_draw * (height - h + 1))
            j = math.floor(left_draw * (width - w + 1))
            return i, j, h, w
    # fallback to a central crop
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:  # the whole image
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w
