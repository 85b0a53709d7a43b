"""Portrait side: the face region (head-motion range), ReferenceNet features, motion frames."""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..emo_model.errors import InputError
from ..emo_model.face import available_detectors, face_mask_for_image, make_detector
from ..emo_model.image import RESIZE_MODES, prepare_image, prepare_mask
from .bundle import EMO_MODEL, EMO_MOTION, EMO_REFERENCE, EMOBundle, Motion, Reference

log = logging.getLogger("emo")

DEFAULT_FACE_SCALE = 1.5  # the head moves: its region spans more than one frame's face box


def _one_image(image: torch.Tensor, what: str) -> torch.Tensor:
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise InputError(f"{what}: expected an IMAGE [B, H, W, C], got shape {tuple(image.shape)}")
    if image.shape[0] > 1:
        log.warning("%s: got a batch of %d images, using the first", what, image.shape[0])
    return image[0, ..., :3]


def detect_face_mask(image: torch.Tensor, detector: str, scale: float) -> torch.Tensor:
    """[H, W, 3] 0..1 → face-region MASK [H, W]; the documented fallback (with a warning) if no face."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    mask, box, found = face_mask_for_image(pixels, make_detector(detector), scale=scale)
    if not found:
        log.warning("EMO: no face found in the portrait; using the central fallback region. Draw a MASK "
                    "over the head and connect it to EMO Face Mask to set the region yourself.")
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


class EMO_FaceMask:
    DESCRIPTION = ("The face region EMO's Face Locator keeps the head in: the detected face box scaled about "
                   "its centre (widen it for more head motion, narrow it for less), or your own MASK.")
    CATEGORY = "EMO"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("face_mask",)
    OUTPUT_TOOLTIPS = ("1 inside the region the head may move in, 0 elsewhere; same size as the image.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The portrait."}),
            "detector": (["auto"] + available_detectors(), {
                "default": "auto", "tooltip": "Face detector; auto picks the best one installed."}),
            "scale": ("FLOAT", {"default": DEFAULT_FACE_SCALE, "min": 0.25, "max": 4.0, "step": 0.05,
                                "tooltip": "Box size relative to the detected face: > 1 widens the head-motion "
                                           "range, < 1 narrows it."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Your own region; replaces the detected box (resized to the image)."}),
        }}

    def make(self, image, detector, scale, mask=None):
        picture = _one_image(image, "EMO Face Mask")
        if mask is not None:
            return (prepare_mask(mask[:1] if mask.ndim == 3 else mask, *picture.shape[:2])[0],)
        return (detect_face_mask(picture, detector, scale)[None],)


class EMO_ReferenceNet:
    DESCRIPTION = ("Prepares the portrait (resize/crop), encodes it with the VAE and runs EMO's ReferenceNet once "
                   "to get the identity features every generated frame attends to.")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_REFERENCE, "IMAGE", "MASK")
    RETURN_NAMES = ("reference", "image", "face_mask")
    OUTPUT_TOOLTIPS = ("Reference features, latents and face region for the EMO Sampler.",
                       "The portrait as the model sees it (after resize/crop).",
                       "The face region, in the prepared image's coordinates.")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 64, "max": 2048, "step": 8}
        return {"required": {
            "emo_model": (EMO_MODEL, {"tooltip": "From EMO Model Loader (or EMO LoRA)."}),
            "image": ("IMAGE", {"tooltip": "The portrait (core LoadImage works). Alpha is composited over white."}),
            "width": ("INT", {"default": 512, **size, "tooltip": "Video width (multiple of 8)."}),
            "height": ("INT", {"default": 512, **size, "tooltip": "Video height (multiple of 8)."}),
            "resize_mode": (list(RESIZE_MODES), {
                "default": "crop", "tooltip": "crop: fill and centre-crop; pad: fit whole, pad with white; "
                                             "stretch: ignore the aspect ratio."}),
        }, "optional": {
            "face_mask": ("MASK", {"tooltip": "Face region from EMO Face Mask (or any MASK, resized to the image). "
                                              "Without it the face is detected automatically."}),
        }}

    @torch.inference_mode()
    def encode(self, emo_model: EMOBundle, image, width, height, resize_mode, face_mask=None):
        picture = _one_image(image, "EMO ReferenceNet")
        if face_mask is None:
            face_mask = detect_face_mask(picture, "auto", DEFAULT_FACE_SCALE)
        elif face_mask.ndim == 3:
            face_mask = face_mask[0]
        prepared = prepare_image(picture, height, width, resize_mode)
        mask = prepare_mask(face_mask, height, width, resize_mode, image_size=tuple(picture.shape[:2]))
        with emo_model.use() as (model, codec):
            latents = codec.encode(prepared[None])
            features = [f.cpu() for f in model.reference_features(latents.to(model.device))]
        reference = Reference(prepared, latents.float().cpu(), features, mask, resize_mode)
        return reference, prepared.permute(1, 2, 0)[None].contiguous(), mask[0]


class EMO_MotionFrames:
    DESCRIPTION = ("Encodes the last frames of an earlier video or generation as motion frames, so the EMO Sampler "
                   "continues that motion seamlessly (continue a video, or split a long job across samplers).")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_MOTION,)
    RETURN_NAMES = ("motion_frames",)
    OUTPUT_TOOLTIPS = ("Latents of the last frames, for the EMO Sampler's motion_frames input.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": (EMO_MODEL, {"tooltip": "From EMO Model Loader."}),
            "reference": (EMO_REFERENCE, {"tooltip": "The reference of the new generation: frames are fitted to "
                                                     "its size with its resize mode."}),
            "images": ("IMAGE", {"tooltip": "Frames of the earlier video (only the last `count` are used)."}),
            "count": ("INT", {"default": 4, "min": 1, "max": 32,
                              "tooltip": "How many of the last frames to keep: at least the Sampler's "
                                         "motion_frame_count (EMO's n; the paper uses 4) plus its overlap_frames."}),
        }}

    def encode(self, emo_model: EMOBundle, reference: Reference, images, count):
        if images.ndim != 4 or images.shape[0] < 1:
            raise InputError(f"EMO Motion Frames: expected IMAGE frames [B, H, W, C], got {tuple(images.shape)}")
        height, width = reference.size
        frames = torch.stack([prepare_image(frame[..., :3], height, width, reference.resize_mode)
                              for frame in images[-count:]])
        with emo_model.use() as (_, codec):
            latents = codec.encode(frames)
        return (Motion(latents.float().cpu()),)
