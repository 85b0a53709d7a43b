"""Base weights into the EMO model, zero-initialised additions, and EMO checkpoints."""
import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel

from emo_model.audio import frame_windows
from emo_model.checkpoint import (build_model, load_base_unet, load_emo_model, load_motion_module,
                                  save_emo_checkpoint)
from emo_model.config import EMOConfig
from emo_model.errors import WeightsError
from emo_model.model import EMOModel
from emo_model.weights import write_safetensors
from helpers import tiny_config, tiny_model


def test_sd15_geometry_accepts_diffusers_unet_and_motion_adapter_state_dicts():
    """Full SD1.5 size, on the meta device: every spatial key of UNet2DConditionModel(SD1.5) and every
    key of MotionAdapter(v2) lands in ReferenceNet / Backbone with the right shape, nothing left over."""
    g = EMOConfig.sd15().unet
    with torch.device("meta"):
        model = EMOModel(EMOConfig.sd15())
        unet = UNet2DConditionModel.from_config(g.diffusers_unet_config()).state_dict()
        motion = MotionAdapter(**g.diffusers_motion_adapter_config()).state_dict()
    load_base_unet(model, unet, "sd15-config")          # raises on any missing/unexpected/mis-shaped key
    load_motion_module(model, motion, "motion-adapter-v2-config")
    assert len(motion) == 567  # AnimateDiff v2 (with mid block) in diffusers layout
    # the only Backbone weights neither file provides are EMO's own zero-initialised additions
    unprovided = set(model.backbone.state_dict()) - set(unet) - set(motion)
    own = {part for k in unprovided for part in k.split(".")
           if part in ("audio_attn", "audio_norm", "speed_attn", "speed_norm", "context")}
    assert own == {"audio_attn", "audio_norm", "speed_attn", "speed_norm", "context"}
    assert all(any(p in k for p in own) for k in unprovided)


def test_sd15_checks_reject_a_wrong_state_dict():
    with torch.device("meta"):
        model = EMOModel(EMOConfig.tiny())
        sd = UNet2DConditionModel.from_config(EMOConfig.tiny().unet.diffusers_unet_config()).state_dict()
    del sd["conv_in.weight"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="conv_in.weight") as e:
        load_base_unet(model, sd, "broken.safetensors")
    assert "broken.safetensors" in str(e.value) and "extra.weight" in str(e.value)


def test_new_layers_leave_a_pretrained_unet_unchanged_at_initialisation():
    """Fresh EMO layers (audio, speed, Face Locator, temporal modules) are exact no-ops: the Backbone
    equals the SD1.5-style UNet it was loaded from (zero text context) frame by frame, with audio,
    speed, face mask and motion frames all switched on."""
    torch.manual_seed(0)
    config = tiny_config()
    pretrained = UNet2DConditionModel.from_config(config.unet.diffusers_unet_config()).eval()
    for p in pretrained.parameters():  # "pretrained": no zero output layers anywhere
        p.data.normal_(0, 0.05)
    model = EMOModel(config).eval()
    load_base_unet(model, pretrained.state_dict(), "pretrained")
    frames = config.frames_per_clip
    noisy = torch.randn(1, frames, 4, 16, 16)
    with torch.no_grad():
        out = model(noisy, 321, reference_latents=torch.randn(1, 4, 16, 16), reference_keep=torch.tensor([False]),
                    motion_latents=torch.randn(1, config.motion_frames, 4, 16, 16),
                    audio_windows=frame_windows(torch.randn(frames, 5, 384))[None],
                    speed=torch.full((1, config.motion_frames + frames), 0.7), face_mask=torch.ones(1, 1, 128, 128))
        ref = pretrained(noisy[0], 321, encoder_hidden_states=torch.zeros(frames, 1, 32)).sample
    torch.testing.assert_close(out[0], ref, atol=1e-5, rtol=1e-4)


def test_build_model_from_base_files(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config.unet.diffusers_unet_config())
    unet.save_pretrained(tmp_path / "unet")
    adapter = MotionAdapter(**config.unet.diffusers_motion_adapter_config())
    adapter.save_pretrained(tmp_path / "motion")
    model = build_model(config, base_unet=tmp_path / "unet", motion_module=tmp_path / "motion")
    torch.testing.assert_close(model.reference_net.conv_in.weight, unet.conv_in.weight)
    torch.testing.assert_close(model.backbone.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight,
                               unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight)
    torch.testing.assert_close(model.backbone.mid_block.motion_modules[0].proj_in.weight,
                               adapter.mid_block.motion_modules[0].proj_in.weight)


def _predict(model):
    g = torch.Generator().manual_seed(3)
    frames = model.config.frames_per_clip
    with torch.no_grad():
        return model(torch.randn(1, frames, 4, 16, 16, generator=g), 100,
                     reference_latents=torch.randn(1, 4, 16, 16, generator=g),
                     audio_windows=torch.randn(1, frames, 5, 5, 384, generator=g), num_motion=2,
                     speed=torch.full((1, frames + 2), 0.5))


def test_checkpoint_roundtrip_full(tmp_path):
    model = tiny_model()
    path = tmp_path / "emo.safetensors"
    save_emo_checkpoint(model, path, metadata={"note": "test"})
    loaded = load_emo_model(path)
    assert loaded.config == model.config
    assert loaded.checkpoint_metadata["note"] == "test"
    torch.testing.assert_close(_predict(loaded), _predict(model))
    assert load_emo_model(path, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_checkpoint_with_emo_parts_only_needs_base_weights(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config.unet.diffusers_unet_config())
    unet.save_pretrained(tmp_path / "unet")
    model = tiny_model()
    load_base_unet(model, unet.state_dict(), "unet")
    path = tmp_path / "emo_only.safetensors"
    # EMO-specific layers + temporal modules, without any SD1.5 spatial weight
    state = {f"{p}.{k}": v for p in ("face_locator", "audio_projection", "speed_encoder")
             for k, v in getattr(model, p).state_dict().items()}
    state.update({f"backbone.{k}": v for k, v in model.backbone.state_dict().items()
                  if "motion_modules" in k or "audio_" in k or k == "context"})
    state["reference_net.context"] = model.reference_net.context
    write_safetensors(state, path, metadata={"format": "emo-comfyui/1", "emo_config": config.to_json()})
    with pytest.raises(WeightsError, match="base_unet") as e:
        load_emo_model(path)
    assert "conv_in.weight" in str(e.value)
    loaded = load_emo_model(path, base_unet=tmp_path / "unet")
    torch.testing.assert_close(_predict(loaded), _predict(model))


def test_checkpoint_errors_name_the_file(tmp_path):
    not_emo = tmp_path / "v1-5-pruned.safetensors"
    write_safetensors({"model.diffusion_model.conv_in.weight": torch.zeros(1)}, not_emo)
    with pytest.raises(WeightsError, match="not an EMO checkpoint") as e:
        load_emo_model(not_emo)
    assert str(not_emo) in str(e.value)
    corrupt = tmp_path / "emo.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="emo.safetensors"):
        load_emo_model(corrupt)
    with pytest.raises(WeightsError, match="missing.safetensors"):
        load_emo_model(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError, match="safetensors"):
        load_emo_model(tmp_path / "model.ckpt")


def test_wav2vec2_base_config_feeds_the_sd15_audio_path():
    """Randomly initialised wav2vec2-base (the paper's encoder family): 13 x 768 features at 50 Hz,
    resampled to 30 fps, windowed +-2, projected to 32 tokens x 768 by the SD1.5-geometry projection."""
    from transformers import Wav2Vec2Config

    from emo_model.audio import Wav2Vec2AudioEncoder
    from emo_model.audio_projection import AudioProjection

    torch.manual_seed(0)
    encoder = Wav2Vec2AudioEncoder.from_config(Wav2Vec2Config())  # defaults = wav2vec2-base geometry
    assert (encoder.num_layers, encoder.hidden_size, encoder.feature_rate) == (13, 768, 50)
    frames = encoder.encode_to_frames(torch.randn(16000) * 0.1, fps=30)
    assert frames.shape == (30, 13, 768)
    config = EMOConfig.sd15(audio_encoder="wav2vec2-base")
    projection = AudioProjection(config.audio_window, config.audio_layers, config.audio_dim, 256,
                                 config.audio_tokens, config.audio_token_dim)  # narrow hidden: only shapes matter here
    tokens = projection(frame_windows(frames, config.audio_window))
    assert tokens.shape == (30, 32, 768)
