"""The core ComfyUI nodes the example workflows use, for the headless runner (no ComfyUI there).

Same ids, inputs and results as ComfyUI's own, so a workflow runs the same in both."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from ..emo_model.errors import InputError
from ..nodes import host

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class LoadImage:
    """Core LoadImage: an input-folder image → IMAGE [1, H, W, 3] and MASK (1 - alpha), as ComfyUI does."""
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (host.input_files(IMAGE_EXTENSIONS), {"image_upload": True})}}

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return True if host.input_path(image).is_file() else f"image not found in the input folder: {image}"

    def load_image(self, image):
        path = host.input_path(image)
        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                rgba = img.convert("RGBA") if "A" in img.getbands() or img.mode == "P" else None
                rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        except OSError as e:
            raise InputError(f"cannot read image {path}: {e}") from None
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0 if rgba is not None else None
        mask = 1.0 - torch.from_numpy(alpha) if alpha is not None else torch.zeros(64, 64)
        return torch.from_numpy(rgb)[None], mask[None]


class ImageBatch:
    """Core ImageBatch: image2's frames after image1's (image2 resized to image1's size if needed)."""
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1, image2):
        if image2.shape[1:3] != image1.shape[1:3]:
            image2 = _resize(image2, image1.shape[1], image1.shape[2], "bilinear")
        return (torch.cat([image1, image2]),)


class ImageScaleBy:
    """Core ImageScaleBy: resize frames by a factor."""
    METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, image, upscale_method, scale_by):
        height, width = round(image.shape[1] * scale_by), round(image.shape[2] * scale_by)
        return (_resize(image, height, width, upscale_method),)


def _resize(images: torch.Tensor, height: int, width: int, method: str) -> torch.Tensor:
    """[B, H, W, C] → [B, height, width, C]; lanczos through PIL as ComfyUI does."""
    if method == "lanczos":
        return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(
            (frame.numpy() * 255).round().astype(np.uint8)).resize((width, height), Image.LANCZOS),
            dtype=np.float32) / 255.0) for frame in images.cpu()])
    x = torch.nn.functional.interpolate(images.movedim(-1, 1), size=(height, width), mode=method,
                                        **({"align_corners": False} if method in ("bilinear", "bicubic") else {}))
    return x.movedim(1, -1).clamp(0, 1)


CORE_NODES = {"LoadImage": LoadImage, "ImageBatch": ImageBatch, "ImageScaleBy": ImageScaleBy}
