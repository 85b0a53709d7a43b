"""Audio side of EMO: decoding, speech-encoder features, and their alignment to video frames."""

from .encoders import (
    AudioEncoder,
    Wav2Vec2AudioEncoder,
    WhisperAudioEncoder,
    load_audio_encoder,
    packaged_whisper_tiny_dir,
)
from .features import features_to_fps, frame_windows, num_video_frames
from .io import decode_audio, load_audio, to_mono_16k

__all__ = [
    "AudioEncoder",
    "decode_audio",
    "Wav2Vec2AudioEncoder",
    "WhisperAudioEncoder",
    "features_to_fps",
    "frame_windows",
    "load_audio",
    "load_audio_encoder",
    "num_video_frames",
    "packaged_whisper_tiny_dir",
    "to_mono_16k",
]
