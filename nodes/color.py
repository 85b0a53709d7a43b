"""EMO Color Match: shifts the generated frames' mean colour onto the portrait's (emo_model.color)."""
from __future__ import annotations

from ..emo_model.color import COLOR_MATCH_MODES, match_color


class EMO_ColorMatch:
    DESCRIPTION = ("Reduces the colour cast of generated frames (a yellow shirt turning orange) by shifting their "
                   "mean colour onto the portrait's. Shapes, motion and the mouth are untouched; drift that differs "
                   "across the frame stays. Leave it out when a style LoRA is meant to change the colours.")
    CATEGORY = "EMO"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The frames with the portrait's mean colour.",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The generated frames (EMO Sampler)."}),
            "reference": ("IMAGE", {"tooltip": "One image: the portrait as the model saw it (EMO ReferenceNet's image)."}),
            "mode": (list(COLOR_MATCH_MODES), {
                "default": "video", "tooltip": "video: one shift for all frames (adds no flicker); frame: each "
                                               "frame on its own (also fixes drift that changes along the video)."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                   "tooltip": "Share of the shift applied: 0 = unchanged, 1 = the portrait's mean."}),
        }}

    def match(self, images, reference, mode, strength):
        return (match_color(images, reference[..., :3], mode, strength),)
