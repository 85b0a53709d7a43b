"""Audio nodes: load a file from the input folder, turn audio into per-frame EMO features."""
from __future__ import annotations

import hashlib

import torch

from ..emo_model.audio import decode_audio, features_to_fps, num_video_frames, to_mono_16k
from ..emo_model.errors import AudioError, InputError
from . import host
from .bundle import EMO_AUDIO_EMBEDS, EMO_AUDIO_ENCODER, AudioEmbeds, AudioEncoderBundle

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov")
CORE_FEATURE_RATE = 50.0  # wav2vec2 and Whisper encoders both give one vector per 20 ms


class EMO_LoadAudio:
    DESCRIPTION = "Loads speech or singing from ComfyUI's input folder (any format FFmpeg reads), optionally a span."
    CATEGORY = "EMO"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The audio at the file's own sample rate and channels (core AUDIO).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": (host.input_files(AUDIO_EXTENSIONS), {
                "audio_upload": True, "tooltip": "Audio file in ComfyUI's input folder; upload one with the button."}),
            "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                        "tooltip": "Skip this many seconds from the start."}),
            "duration_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                           "tooltip": "Seconds to load from the start point; 0 loads to the end."}),
        }, "optional": {
            # the frontend's audio player + upload button attach to an input named exactly "audio"
            # and need this AUDIO_UI widget next to it (as on core LoadAudio)
            "audioUI": ("AUDIO_UI", {"tooltip": "Player for the chosen file."}),
        }}

    def load(self, audio, start_seconds=0.0, duration_seconds=0.0, audioUI=None):
        waveform, rate = decode_audio(host.input_path(audio), None, start_seconds, duration_seconds or None)
        return ({"waveform": waveform[None], "sample_rate": rate},)

    @classmethod
    def IS_CHANGED(cls, audio, **_):
        path = host.input_path(audio)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""

    @classmethod
    def VALIDATE_INPUTS(cls, audio):  # only `audio`: ComfyUI still range-checks the other inputs
        if not host.input_path(audio).is_file():
            return f"audio file not found in the input folder: {audio}"
        return True


class EMO_AudioEncode:
    DESCRIPTION = ("Turns audio into EMO's per-video-frame audio features (the speech encoder's hidden states, "
                   "resampled to the frame rate). Takes the EMO audio encoder, or the output of core "
                   "AudioEncoderEncode (wav2vec2-base) instead.")
    CATEGORY = "EMO"
    RETURN_TYPES = (EMO_AUDIO_EMBEDS, "INT", "AUDIO")
    RETURN_NAMES = ("audio_embeds", "num_frames", "audio")
    OUTPUT_TOOLTIPS = ("Audio features for the EMO Sampler.",
                       "Video frames the audio covers: floor(duration x fps).",
                       "The input audio cut to exactly num_frames / fps seconds, for muxing into the video.")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "Speech or singing (core AUDIO, any rate and channels)."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 0.01, "max": 240.0, "step": 0.01,
                              "tooltip": "Video frame rate; one set of audio features per frame."}),
        }, "optional": {
            "audio_encoder": (EMO_AUDIO_ENCODER, {"tooltip": "From EMO Audio Encoder Loader."}),
            "audio_encoder_output": ("AUDIO_ENCODER_OUTPUT", {
                "tooltip": "Instead of audio_encoder: core AudioEncoderEncode's output (all hidden layers are used)."}),
        }}

    def encode(self, audio, fps, audio_encoder: AudioEncoderBundle | None = None, audio_encoder_output=None):
        if fps <= 0:
            raise InputError(f"fps must be > 0, got {fps}")
        waveform, rate = audio["waveform"], int(audio["sample_rate"])
        frames = num_video_frames(waveform.shape[-1], rate, fps)
        if frames < 1:
            raise AudioError(f"the audio lasts {waveform.shape[-1] / rate * 1000:.0f} ms, shorter than one video "
                             f"frame at {fps:g} fps ({1000 / fps:.0f} ms): give a longer clip")
        if audio_encoder_output is not None:
            features, source = self._from_core(audio_encoder_output, fps, frames), "core AudioEncoderEncode"
        elif audio_encoder is not None:
            encoder = audio_encoder.loaded()
            mono = to_mono_16k(waveform, rate, encoder.sample_rate)
            features, source = encoder.encode_to_frames(mono, fps, frames).float().cpu(), type(encoder).__name__
        else:
            raise InputError("connect an EMO audio encoder (EMO Audio Encoder Loader) or core AudioEncoderEncode output")
        samples = round(frames * rate / fps)
        trimmed = waveform[..., :samples]
        if trimmed.shape[-1] < samples:  # rounding can leave the last sample short
            trimmed = torch.nn.functional.pad(trimmed, (0, samples - trimmed.shape[-1]))
        return AudioEmbeds(features, float(fps), source), frames, {"waveform": trimmed, "sample_rate": rate}

    @staticmethod
    def _from_core(output: dict, fps: float, frames: int) -> torch.Tensor:
        layers = output.get("encoded_audio_all_layers")
        if not layers:
            raise InputError("the AudioEncoderEncode output has no 'encoded_audio_all_layers'; update ComfyUI")
        stacked = torch.stack([layer[0] for layer in layers], dim=1).float().cpu()  # [T', L, D]
        return features_to_fps(stacked, CORE_FEATURE_RATE, fps, frames)
