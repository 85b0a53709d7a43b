"""ComfyUI nodes of the pack (V1 API), each a thin wrapper around one emo_model stage.

Ids carry the `EMO_` prefix: ComfyUI silently drops a custom node whose id equals a core one.
"""
from . import host
from .audio import EMO_AudioEncode, EMO_LoadAudio
from .color import EMO_ColorMatch
from .loaders import EMO_AudioEncoderLoader, EMO_LoraLoader, EMO_ModelLoader
from .reference import EMO_FaceMask, EMO_MotionFrames, EMO_ReferenceNet
from .sampler import EMO_Sampler
from .video import EMO_VideoCombine

host.register_model_folders()

_NODES = (
    (EMO_ModelLoader, "EMO Model Loader"),
    (EMO_AudioEncoderLoader, "EMO Audio Encoder Loader"),
    (EMO_LoraLoader, "EMO LoRA"),
    (EMO_LoadAudio, "EMO Load Audio"),
    (EMO_AudioEncode, "EMO Audio Encode"),
    (EMO_FaceMask, "EMO Face Mask"),
    (EMO_ReferenceNet, "EMO ReferenceNet"),
    (EMO_MotionFrames, "EMO Motion Frames"),
    (EMO_Sampler, "EMO Sampler"),
    (EMO_ColorMatch, "EMO Color Match"),
    (EMO_VideoCombine, "EMO Video Combine"),
)
NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES}
