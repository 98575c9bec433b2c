"""Image decoding and augmentation for the loader: operations configured per field.

    from fastload.image import RandomResizedCrop, RandomHorizontalFlip
    loader = fastload.DataLoader(ds, batch_size=64, transforms={"image": [RandomResizedCrop(224),
                                                                          RandomHorizontalFlip()]})

gives ``batch["image"]`` as one ``(64, 224, 224, 3)`` uint8 tensor. See docs/images.md.
"""

from .ops import (CenterCrop, DecodeImage, Normalize, RandomHorizontalFlip, RandomResizedCrop, Resize,
                  ToTensor)
from .pipeline import ImagePipeline, pipelines_of



def __getattr__(name: str):
    # decode imports simplejpeg/Pillow (the "images" extra) only when decoding is asked for
    if name in ("decode_rgb", "encode_raw", "probe"):
        from . import decode

        return getattr(decode, name)
    raise AttributeError(f"module 'fastload.image' has no attribute {name!r}")


__all__ = ["CenterCrop", "DecodeImage", "ImagePipeline", "Normalize", "RandomHorizontalFlip",
           "RandomResizedCrop", "Resize", "ToTensor", "decode_rgb", "encode_raw", "pipelines_of", "probe"]
