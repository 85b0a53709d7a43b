"""Colour matching of generated frames to the portrait (emo_model.color)."""
import pytest
import torch

from emo_model.color import match_color
from emo_model.errors import InputError


def drifted_video():
    """A 'portrait' and 6 frames of it with a moving bright square, tinted orange-ward by a drift."""
    g = torch.Generator().manual_seed(0)
    portrait = torch.rand(32, 32, 3, generator=g) * 0.6 + 0.2
    frames = portrait.expand(6, 32, 32, 3).clone()
    for i in range(6):
        frames[i, 4:10, 4 + 3 * i:10 + 3 * i] = 0.9
    drift = torch.tensor([0.08, -0.03, -0.1])
    return portrait, frames, frames + drift


def test_video_mode_restores_the_portraits_mean_and_keeps_every_frame_to_frame_change():
    portrait, clean, drifted = drifted_video()
    matched = match_color(drifted, portrait)
    assert torch.allclose(matched.mean(dim=(0, 1, 2)), portrait.mean(dim=(0, 1)), atol=1e-5)
    assert torch.allclose(matched.diff(dim=0), drifted.diff(dim=0), atol=1e-6)  # no flicker added
    assert (matched - clean).abs().mean() < 0.25 * (drifted - clean).abs().mean()


def test_frame_mode_meets_the_portraits_mean_in_every_frame():
    portrait, _, drifted = drifted_video()
    ramp = drifted + torch.linspace(0, 0.1, 6)[:, None, None, None]  # drift that grows along the video
    matched = match_color(ramp, portrait, mode="frame")
    assert torch.allclose(matched.mean(dim=(1, 2)), portrait.mean(dim=(0, 1)).expand(6, 3), atol=1e-5)


def test_strength_scales_the_shift_and_zero_leaves_the_frames_alone():
    portrait, _, drifted = drifted_video()
    assert torch.equal(match_color(drifted, portrait, strength=0.0), drifted)  # even values outside 0..1
    full = match_color(drifted, portrait) - drifted
    half = match_color(drifted, portrait, strength=0.5) - drifted
    assert torch.allclose(half, full / 2, atol=1e-6)


def test_any_reference_size_uint8_and_the_range_is_kept():
    portrait, _, drifted = drifted_video()
    big = torch.nn.functional.interpolate(portrait.permute(2, 0, 1)[None], size=(96, 64), mode="nearest")
    big = big.permute(0, 2, 3, 1)  # [1, 96, 64, 3]: a batch of one at another size, same mean
    assert torch.allclose(match_color(drifted, big), match_color(drifted, portrait), atol=1e-5)
    as_bytes = (drifted.clamp(0, 1) * 255).round().to(torch.uint8)
    out = match_color(as_bytes, portrait)
    assert out.dtype == torch.uint8
    assert (out.float() / 255 - match_color(drifted.clamp(0, 1), portrait)).abs().max() <= 1 / 255 + 1e-6
    white = match_color(torch.full((2, 8, 8, 3), 0.9), torch.ones(8, 8, 3))
    assert white.max() <= 1 and torch.allclose(white, torch.ones_like(white))


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="lab"), "mode must be one of"),
    (dict(strength=1.5), "strength must lie in 0..1"),
    (dict(frames=torch.rand(4, 8, 8, 4)), r"frames must be a non-empty batch \[N, H, W, 3\]"),
    (dict(frames=torch.rand(0, 8, 8, 3)), "non-empty"),
    (dict(reference=torch.rand(2, 8, 8, 3)), r"reference must be one RGB image"),
    (dict(frames=torch.randint(0, 255, (4, 8, 8, 3), dtype=torch.int32)), "must be uint8 .* or float"),
])
def test_bad_input_is_refused_with_what_was_wrong(kwargs, message):
    args = dict(frames=torch.rand(4, 8, 8, 3), reference=torch.rand(8, 8, 3))
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        match_color(**args)
