"""Behaviour of the EMO architecture on a tiny geometry: each condition does what the paper says."""
import pytest
import torch

from emo_model.audio import frame_windows
from emo_model.conditioning import Conditioning
from helpers import tiny_model

F_, N_ = 8, 2  # tiny geometry: 8 frames per clip, 2 motion frames


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def inputs(seed=0, frames=F_):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(noisy=r(1, frames, 4, 16, 16), reference_latents=r(1, 4, 16, 16),
                motion_latents=r(1, N_, 4, 16, 16), audio=r(frames, 5, 384), speed=torch.full((1, N_ + frames), 0.6),
                face_mask=torch.ones(1, 1, 128, 128))


def run(model, x, **changes):
    x = {**x, **changes}
    with torch.no_grad():
        return model(x["noisy"], 500, reference_latents=x["reference_latents"], motion_latents=x["motion_latents"],
                     audio_windows=frame_windows(x["audio"], 2)[None], speed=x["speed"], face_mask=x["face_mask"])


def per_frame_change(a, b):
    return (a - b).abs().flatten(2).mean(-1)[0]  # [F]


def test_audio_at_frame_t_changes_frame_t_most(model):
    x = inputs()
    base = run(model, x)
    t = 1
    audio = x["audio"].clone()
    audio[t] += 3.0 * torch.randn_like(audio[t])
    change = per_frame_change(run(model, x, audio=audio), base)
    near = change[t]
    far = change[t + 4:]  # beyond the +-2 audio window
    assert near > 0
    assert near > 3 * far.max(), change


def test_reference_image_changes_every_frame(model):
    x = inputs()
    change = per_frame_change(run(model, x, reference_latents=torch.randn(1, 4, 16, 16)), run(model, x))
    assert (change > 1e-3).all(), change


def test_motion_frames_change_the_clip_in_eval_mode(model):
    assert not model.training
    x = inputs()
    change = per_frame_change(run(model, x, motion_latents=torch.randn(1, N_, 4, 16, 16)), run(model, x))
    assert change[0] > 1e-3, change
    # the influence is strongest next to the motion frames
    assert change[:2].mean() > change[-2:].mean(), change


def test_speed_and_face_mask_condition_the_output(model):
    x = inputs()
    base = run(model, x)
    assert per_frame_change(run(model, x, speed=torch.full((1, N_ + F_), 1.8)), base).min() > 1e-4
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 32:96, 40:88] = 1
    assert torch.equal(run(model, x), base)  # deterministic, so any change below is the mask's
    assert per_frame_change(run(model, x, face_mask=mask), base).min() > 1e-6


def test_dropped_conditions_in_a_batch_equal_absent_conditions(model):
    """CFG batching: the (no reference, no audio) entry of a batch equals a pass without them."""
    x = inputs()
    windows = frame_windows(x["audio"], 2)
    with torch.no_grad():
        ref = model.reference_features(x["reference_latents"])
        batched = model.condition(F_, reference=ref, reference_keep=torch.tensor([False, True]),
                                  audio_windows=windows, audio_keep=torch.tensor([False, True]), num_motion=N_)
        out = model.denoise(x["noisy"].expand(2, -1, -1, -1, -1), 500, batched)
        bare = model.denoise(x["noisy"], 500, model.condition(F_, num_motion=N_))
        full = model.denoise(x["noisy"], 500, model.condition(F_, reference=ref, audio_windows=windows, num_motion=N_))
    torch.testing.assert_close(out[0:1], bare, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1:2], full, atol=1e-5, rtol=1e-4)
    assert (bare - full).abs().max() > 1e-3


def test_dropped_motion_frames_in_a_batch_equal_zero_motion_maps(model):
    """Motion guidance batching: a row with motion_keep False sees what a first clip sees."""
    x = inputs()
    with torch.no_grad():
        motion = model.motion_features(x["motion_latents"])
        batched = model.condition(F_, motion=motion, motion_keep=torch.tensor([False, True]), num_motion=N_)
        out = model.denoise(x["noisy"].expand(2, -1, -1, -1, -1), 500, batched)
        zero = model.denoise(x["noisy"], 500, model.condition(F_, num_motion=N_))
        kept = model.denoise(x["noisy"], 500, model.condition(F_, motion=motion, num_motion=N_))
    torch.testing.assert_close(out[0:1], zero, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1:2], kept, atol=1e-5, rtol=1e-4)
    assert (zero - kept).abs().max() > 1e-3


def test_cross_reference_attention_reading():
    model = tiny_model(reference_attention="cross")
    x = inputs()
    assert hasattr(model.backbone.down_blocks[0].attentions[0].transformer_blocks[0], "ref_attn")
    change = per_frame_change(run(model, x, reference_latents=torch.randn(1, 4, 16, 16)), run(model, x))
    assert (change > 1e-4).all()


def test_stage1_image_pass_skips_temporal_modules(model):
    x = inputs(frames=1)
    with torch.no_grad():
        ref = model.reference_features(x["reference_latents"])
        a = model.denoise(x["noisy"], 10, model.condition(1, reference=ref, temporal=False))
        model_b = tiny_model(seed=1)
        model_b.load_state_dict({k: v for k, v in model.state_dict().items() if "motion_modules" not in k}, strict=False)
        b = model_b.denoise(x["noisy"], 10, model_b.condition(1, reference=model_b.reference_features(
            x["reference_latents"]), temporal=False))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs(dtype):
    model = tiny_model().to(dtype)
    out = run(model, inputs())
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_conditioning_frame_count_mismatch_is_reported(model):
    with pytest.raises(ValueError, match="frames"):
        model.denoise(torch.randn(1, 3, 4, 16, 16), 1, Conditioning(num_frames=4))
