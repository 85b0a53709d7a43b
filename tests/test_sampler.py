"""Clip-by-clip sampling: determinism, motion-frame hand-over, guidance, cancellation, flat memory."""
import dataclasses

import numpy as np
import pytest
import torch

from emo_model.errors import InputError
from emo_model.audio.features import frame_windows
from emo_model.sampler import (SamplerSettings, clip_indices, clip_plan, combine_guidance, guidance_branches,
                             rescale_guidance, sample_clips, speed_curve)
from emo_model.schedulers import make_scheduler
from helpers import tiny_model

F_ = 8  # tiny geometry frames per clip


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def decode(latents):  # cheap stand-in for the VAE: first 3 latent channels as pixels
    return ((latents[:, :3].float().clamp(-2, 2) + 2) * 63.75).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def generate(model, frames, steps=2, **kwargs):
    g = torch.Generator().manual_seed(5)
    audio = kwargs.pop("frame_audio", torch.randn(frames, 5, 384, generator=g))
    reference = kwargs.pop("reference_latents", torch.randn(1, 4, 16, 16, generator=g))
    settings = kwargs.pop("settings", SamplerSettings(steps=steps, scheduler="ddim"))
    return list(sample_clips(model, decode, reference_latents=reference, frame_audio=audio, num_frames=frames,
                             settings=settings, **kwargs))


def test_any_length_runs_clip_by_clip_and_is_seeded(model):
    clips = generate(model, 2 * F_ + 3)
    assert [c.frames.shape[0] for c in clips] == [F_, F_, 3]
    assert clips[0].frames.dtype == torch.uint8 and clips[0].frames.device.type == "cpu"
    again = generate(model, 2 * F_ + 3)
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(clips, again))
    other = generate(model, 2 * F_ + 3, settings=SamplerSettings(steps=2, seed=1))
    assert not torch.equal(other[0].latents, clips[0].latents)


def test_motion_frames_carry_the_previous_clip_into_the_next(model):
    """Same noise and audio for clip 2; only the earlier frames differ → clip 2's first frames differ most."""
    a = generate(model, F_, initial_motion=torch.randn(4, 4, 16, 16))
    b = generate(model, F_, initial_motion=torch.randn(4, 4, 16, 16))
    change = (a[0].latents - b[0].latents).abs().flatten(1).mean(1)
    assert change[0] > 1e-3
    assert change[:2].mean() > change[-2:].mean()
    without = SamplerSettings(steps=2, motion_frames=0)
    c = generate(model, F_, initial_motion=torch.randn(4, 4, 16, 16), settings=without)
    d = generate(model, F_, initial_motion=torch.randn(4, 4, 16, 16), settings=without)
    assert torch.equal(c[0].latents, d[0].latents)  # n = 0: earlier frames are ignored


def test_without_reusing_motion_every_clip_starts_like_the_first(model):
    """reuse_motion=False (the benchmark's ablation): clip 1 gets zero motion maps instead of clip 0's end."""
    carried = generate(model, 2 * F_)
    fresh = generate(model, 2 * F_, settings=SamplerSettings(steps=2, scheduler="ddim", reuse_motion=False))
    assert torch.equal(carried[0].latents, fresh[0].latents)
    assert not torch.equal(carried[1].latents, fresh[1].latents)


def test_shared_noise_starts_every_clip_from_the_first_clips_noise(model):
    """With the same audio in every frame and no motion hand-over, clips differ only by their noise."""
    audio = torch.randn(1, 5, 384).expand(2 * F_, -1, -1)
    kwargs = dict(steps=2, scheduler="ddim", reuse_motion=False)
    shared = generate(model, 2 * F_, frame_audio=audio, settings=SamplerSettings(shared_noise=True, **kwargs))
    assert torch.equal(shared[0].latents, shared[1].latents)
    fresh = generate(model, 2 * F_, frame_audio=audio, settings=SamplerSettings(**kwargs))
    assert torch.equal(fresh[0].latents, shared[0].latents)  # clip 0 draws the same noise either way
    assert not torch.equal(fresh[0].latents, fresh[1].latents)


def test_clip_plan():
    assert clip_plan(19, 8) == [(0, 0), (8, 0), (16, 0)]
    assert clip_plan(19, 8, 2) == [(0, 0), (8, 2), (14, 2)]
    assert clip_plan(19, 8, 2, given=2) == [(0, 2), (6, 2), (12, 2), (18, 2)]
    assert clip_plan(8, 8, 3) == [(0, 0)]
    # fewer earlier frames than n + o: the n motion frames come first, only the rest is held
    assert clip_plan(19, 8, 2, motion_frames=2, given=3) == [(0, 1), (7, 2), (13, 2)]
    assert clip_plan(19, 8, 2, motion_frames=2, given=2) == [(0, 0), (8, 2), (14, 2)]
    assert clip_plan(12, 4, 3, motion_frames=4) == [(0, 0), (4, 0), (8, 3), (9, 3), (10, 3), (11, 3)]
    with pytest.raises(InputError, match="overlap"):
        clip_plan(19, 8, 8)


def spy_on_clip_inputs(model, monkeypatch):
    """Record, per clip, the latents the motion frames are encoded from and the speed curve the clip gets."""
    motion_inputs, speeds = [], []
    motion_features, condition = model.motion_features, model.condition
    monkeypatch.setattr(model, "motion_features", lambda x: (motion_inputs.append(x.clone()), motion_features(x))[1])
    monkeypatch.setattr(model, "condition", lambda f, **kw: (speeds.append(kw["speed"]), condition(f, **kw))[1])
    return motion_inputs, speeds


def test_overlap_takes_motion_frames_and_speed_from_before_the_held_frames(model, monkeypatch):
    n, o, frames = model.config.motion_frames, 2, 2 * F_ + 3
    motion_inputs, speeds = spy_on_clip_inputs(model, monkeypatch)
    curve = torch.arange(frames, dtype=torch.float32) / frames  # a distinct speed per frame shows the indices
    settings = SamplerSettings(steps=1, overlap_frames=o, reference_cfg=1.0, audio_cfg=1.0)
    clips = generate(model, frames, settings=settings, speed=curve)
    made = torch.cat([c.latents for c in clips])
    assert len(clips) == len(clip_plan(frames, F_, o, n)) == 3
    for clip, (start, known) in enumerate(clip_plan(frames, F_, o, n)):
        first = start - known
        torch.testing.assert_close(speeds[clip][0], curve[clip_indices(first - n, n + F_, frames)])
        if clip:
            assert known == o
            torch.testing.assert_close(motion_inputs[clip - 1][0], made[first - n:first])


def test_short_initial_motion_fills_the_motion_frames_before_any_overlap(model, monkeypatch):
    """n = 2, o = 2: with 3 given frames the first clip takes 2 as motion frames and holds 1; with 2 it holds none."""
    n, o = model.config.motion_frames, 2
    given = torch.randn(3, 4, 16, 16)
    settings = SamplerSettings(steps=1, overlap_frames=o, reference_cfg=1.0, audio_cfg=1.0)
    for count, held in [(3, 1), (2, 0), (1, 0)]:
        motion_inputs, _ = spy_on_clip_inputs(model, monkeypatch)
        clips = generate(model, F_, settings=settings, initial_motion=given[-count:])
        assert clips[0].frames.shape[0] == F_ - held
        expected = given[-count:][:n] if count >= n else torch.cat([given[-1:]] * n)  # one frame: repeated
        torch.testing.assert_close(motion_inputs[0][0], expected)


def test_overlap_holds_the_previous_frames_at_each_steps_noise_level(model, monkeypatch):
    """Clip 1 spends its first o slots on clip 0's last o latents, noised to every step's level with the noise
    they were denoised from in clip 0 (or, carry_overlap_noise off, clip 1's own noise), and its audio windows
    and outputs are those of the frames in the slots."""
    o, frames = 3, 2 * F_ + 1
    audio = torch.randn(frames, 5, 384)
    inputs, windows = [], []
    denoise, condition = model.denoise, model.condition
    monkeypatch.setattr(model, "denoise", lambda x, t, c, f=None: (inputs.append((x.clone(), t)), denoise(x, t, c, f))[1])
    monkeypatch.setattr(model, "condition", lambda f, **kw: (windows.append(kw["audio_windows"]), condition(f, **kw))[1])
    settings = SamplerSettings(steps=3, scheduler="ddim", overlap_frames=o, reference_cfg=1.0, audio_cfg=1.0)
    clips = generate(model, frames, frame_audio=audio, settings=settings)
    assert [c.frames.shape[0] for c in clips] == [F_, F_ - o, 1 + o]  # 8 new, then 5 new, then the last 1
    assert torch.equal(windows[1], frame_windows(audio, model.config.audio_window, clip_indices(F_ - o, F_, frames)))
    generator = torch.Generator().manual_seed(settings.seed)
    noise0, noise1 = torch.randn(1, F_, 4, 16, 16, generator=generator), torch.randn(1, F_, 4, 16, 16, generator=generator)
    scheduler = make_scheduler("ddim", model.config.noise)
    scheduler.set_timesteps(3)
    for x, t in inputs[3:6]:  # clip 1
        expected = scheduler.add_noise(clips[0].latents[None, -o:], noise0[:, -o:], t.reshape(1))
        torch.testing.assert_close(x[:, :o], expected)
    for x, t in inputs[6:9]:  # clip 2 holds clip 1's last o new frames, denoised from clip 1's last o slots
        expected = scheduler.add_noise(clips[1].latents[None, -o:], noise1[:, -o:], t.reshape(1))
        torch.testing.assert_close(x[:, :o], expected)
    inputs.clear()
    fresh = generate(model, frames, frame_audio=audio, settings=dataclasses.replace(settings, carry_overlap_noise=False))
    for x, t in inputs[3:6]:
        expected = scheduler.add_noise(fresh[0].latents[None, -o:], noise1[:, :o], t.reshape(1))
        torch.testing.assert_close(x[:, :o], expected)
    assert torch.equal(fresh[0].latents, clips[0].latents) and not torch.equal(fresh[1].latents, clips[1].latents)
    without = generate(model, frames, frame_audio=audio, settings=SamplerSettings(steps=3, reference_cfg=1.0, audio_cfg=1.0))
    assert torch.equal(without[0].latents, clips[0].latents)  # the first clip has nothing to overlap


def test_overlap_continues_initial_motion_even_without_motion_frames(model):
    settings = SamplerSettings(steps=2, motion_frames=0, overlap_frames=2)
    a = generate(model, F_, settings=settings, initial_motion=torch.randn(4, 4, 16, 16))
    b = generate(model, F_, settings=settings, initial_motion=torch.randn(4, 4, 16, 16))
    assert [c.frames.shape[0] for c in a] == [F_ - 2, 2]
    assert not torch.equal(a[0].latents, b[0].latents)
    fresh = SamplerSettings(steps=2, overlap_frames=2, reuse_motion=False)  # no hand-over: nothing to overlap
    assert [c.frames.shape[0] for c in generate(model, 2 * F_, settings=fresh)] == [F_, F_]


def test_guidance_batches_only_needed_branches_into_one_backbone_call(model, monkeypatch):
    calls = []
    original = model.denoise

    def spy(noisy, t, cond, face=None):
        calls.append(noisy.shape[0])
        return original(noisy, t, cond, face)

    monkeypatch.setattr(model, "denoise", spy)
    for ref_cfg, audio_cfg, batch in [(2.0, 3.0, 3), (1.0, 3.0, 2), (1.0, 1.0, 1)]:
        calls.clear()
        generate(model, F_, steps=3, settings=SamplerSettings(steps=3, reference_cfg=ref_cfg, audio_cfg=audio_cfg))
        assert calls == [batch] * 3
    # motion guidance adds a branch from the second clip on: the first has no motion frames to follow
    calls.clear()
    generate(model, 2 * F_, steps=3, settings=SamplerSettings(steps=3, reference_cfg=2.0, audio_cfg=3.0, motion_cfg=2.0))
    assert calls == [3] * 3 + [4] * 3
    # ... and none when no clip has motion frames to follow
    for no_motion in (dict(reuse_motion=False), dict(motion_frames=0)):
        calls.clear()
        generate(model, 2 * F_, steps=3, settings=SamplerSettings(steps=3, reference_cfg=2.0, audio_cfg=3.0,
                                                                   motion_cfg=2.0, **no_motion))
        assert calls == [3] * 6, no_motion


def test_motion_guidance_below_one_leans_towards_a_first_clip(model):
    """s_motion 0 (no other guidance) is the no-motion branch alone: every clip as if it were the first, as
    reuse_motion=False makes it; the workflows' 0.5 lies between that and following the motion frames."""
    off = dict(steps=2, scheduler="ddim", reference_cfg=1.0, audio_cfg=1.0)
    zero = generate(model, 2 * F_, settings=SamplerSettings(motion_cfg=0.0, **off))
    fresh = generate(model, 2 * F_, settings=SamplerSettings(reuse_motion=False, **off))
    torch.testing.assert_close(zero[1].latents, fresh[1].latents, atol=1e-4, rtol=1e-4)  # batch of 2 vs 1: rounding
    carried = generate(model, 2 * F_, settings=SamplerSettings(**off))
    half = generate(model, 2 * F_, settings=SamplerSettings(motion_cfg=0.5, **off))
    assert torch.equal(half[0].latents, carried[0].latents)  # the first clip has no motion frames to weigh
    to_carried = (half[1].latents - carried[1].latents).norm()
    assert 0 < to_carried < (fresh[1].latents - carried[1].latents).norm()


def test_audio_guidance_zero_keeps_the_audio_out_of_motion_guidance(model):
    """Audio guidance 0 is "no audio" (the benchmark's ablation): with motion guidance on too, the motion
    term is taken on audio-free branches, so two different tracks give the same video."""
    settings = SamplerSettings(steps=2, scheduler="ddim", reference_cfg=2.0, audio_cfg=0.0, motion_cfg=0.5)
    g = torch.Generator().manual_seed(1)
    a = generate(model, 2 * F_, settings=settings, frame_audio=torch.randn(2 * F_, 5, 384, generator=g))
    b = generate(model, 2 * F_, settings=settings, frame_audio=torch.randn(2 * F_, 5, 384, generator=g))
    assert all(torch.equal(x.latents, y.latents) for x, y in zip(a, b))
    heard = dataclasses.replace(settings, audio_cfg=0.5)
    c = generate(model, 2 * F_, settings=heard, frame_audio=torch.randn(2 * F_, 5, 384, generator=g))
    d = generate(model, 2 * F_, settings=heard, frame_audio=torch.randn(2 * F_, 5, 384, generator=g))
    assert not torch.equal(c[1].latents, d[1].latents)


def test_guidance_formula():
    u, r, f = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    assert guidance_branches(2.0, 3.0) == [(False, False, True), (True, False, True), (True, True, True)]
    out = combine_guidance(torch.stack([u, r, f]), 2.0, 3.0)
    torch.testing.assert_close(out[0], u + 2.0 * (r - u) + 3.0 * (f - r))
    torch.testing.assert_close(combine_guidance(torch.stack([r, f]), 1.0, 3.0)[0], r + 3.0 * (f - r))
    m = torch.tensor([3.5])  # reference and audio, zero motion maps
    assert guidance_branches(2.0, 3.0, 1.5) == [(False, False, True), (True, False, True), (True, True, False),
                                                (True, True, True)]
    out = combine_guidance(torch.stack([u, r, m, f]), 2.0, 3.0, 1.5)
    torch.testing.assert_close(out[0], u + 2.0 * (r - u) + 3.0 * (f - r) + 0.5 * (f - m))
    torch.testing.assert_close(combine_guidance(torch.stack([m, f]), 1.0, 1.0, 4.0)[0], m + 4.0 * (f - m))
    m0 = torch.tensor([1.5])  # reference, no audio, zero motion maps: audio guidance 0 hears nothing
    assert guidance_branches(2.0, 0.0, 0.5) == [(False, False, True), (True, False, True), (True, False, False),
                                                (True, True, True)]
    out = combine_guidance(torch.stack([u, r, m0, f]), 2.0, 0.0, 0.5)
    torch.testing.assert_close(out[0], r + 1.0 * (r - u) - 0.5 * (r - m0))
    with pytest.raises(ValueError, match="guidance branches"):  # 3 predictions for the 4 branches
        combine_guidance(torch.stack([u, r, f]), 2.0, 3.0, 1.5)


def test_guidance_rescale_pulls_the_guided_spread_to_the_full_predictions():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(2, 8, 4, 5, 5, generator=g)
    guided = 3.0 * full + 0.5 * torch.randn(2, 8, 4, 5, 5, generator=g)
    torch.testing.assert_close(rescale_guidance(guided, full, 0.0), guided)
    whole = rescale_guidance(guided, full, 1.0)
    torch.testing.assert_close(whole.flatten(1).std(1), full.flatten(1).std(1))  # per batch entry
    torch.testing.assert_close(rescale_guidance(guided, full, 0.7), 0.7 * whole + 0.3 * guided)


def test_guidance_rescale_in_sampling(model):
    """On with guidance, it changes the clip; with every scale at 1 there is nothing to rescale."""
    base = dict(steps=2, reference_cfg=2.5, audio_cfg=5.0)
    plain = generate(model, F_, settings=SamplerSettings(**base))[0].latents
    rescaled = generate(model, F_, settings=SamplerSettings(**base, guidance_rescale=0.7))[0].latents
    assert torch.isfinite(rescaled).all() and not torch.equal(plain, rescaled)
    off = dict(steps=2, reference_cfg=1.0, audio_cfg=1.0)
    assert torch.equal(generate(model, F_, settings=SamplerSettings(**off))[0].latents,
                       generate(model, F_, settings=SamplerSettings(**off, guidance_rescale=0.7))[0].latents)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match="guidance_rescale"):
            SamplerSettings(guidance_rescale=bad).validate()


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp_2m", "unipc", "euler"])
def test_schedulers(model, scheduler):
    settings = SamplerSettings(steps=2, scheduler=scheduler,
                               schedule_overrides={"prediction_type": "v_prediction", "rescale_betas_zero_snr": True})
    (clip,) = generate(model, 4, settings=settings)
    assert torch.isfinite(clip.latents).all()
    settings.overlap_frames = 2  # held slots re-noised through each scheduler's add_noise
    assert all(torch.isfinite(c.latents).all() for c in generate(model, F_ + 2, settings=settings))


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp_2m", "unipc", "euler"])
@pytest.mark.parametrize("prediction_type,zero_snr", [("v_prediction", True), ("epsilon", False)])
def test_add_noise_gives_the_level_each_step_denoises_from(scheduler, prediction_type, zero_snr):
    """What overlap relies on: with a perfect denoiser each scheduler's latents before step t equal
    add_noise(x0, noise, t), so held slots reset that way sit at the level of the frames around them."""
    noise_schedule = tiny_model().config.noise
    sched = make_scheduler(scheduler, noise_schedule, prediction_type=prediction_type, rescale_betas_zero_snr=zero_snr)
    sched.set_timesteps(6)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g)
    # zero terminal SNR starts from pure noise, as the sampler does; otherwise start on the trajectory
    latents = noise * sched.init_noise_sigma if zero_snr else sched.add_noise(x0, noise, sched.timesteps[:1])
    for t in sched.timesteps:
        expected = sched.add_noise(x0, noise, t.reshape(1))
        # DDIM steps to t - 1000 // steps, one timestep off the trailing grid: up to 1% here; a step off is 13%+
        torch.testing.assert_close(latents, expected, rtol=0, atol=2e-2 * float(expected.abs().max()))
        alpha = sched.alphas_cumprod[int(t)]
        pred = noise if prediction_type == "epsilon" else alpha.sqrt() * noise - (1 - alpha).sqrt() * x0
        latents = sched.step(pred, t, latents).prev_sample


def test_callback_sees_every_step_and_can_cancel(model):
    seen = []

    def cancel_at_third(info):
        seen.append((info.clip, info.step))
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(model, 3 * F_, steps=2, callback=cancel_at_third)
    assert seen == [(0, 0), (0, 1), (1, 0)]


def test_memory_is_flat_in_audio_length(model, monkeypatch):
    """Every Backbone call has the same size whatever the length, and clips are produced lazily."""
    shapes = []
    original = model.denoise
    monkeypatch.setattr(model, "denoise", lambda x, t, c, f=None: (shapes.append(tuple(x.shape)), original(x, t, c, f))[1])
    generate(model, F_)
    short = set(shapes)
    shapes.clear()
    clips = sample_clips(model, decode, reference_latents=torch.randn(1, 4, 16, 16),
                         frame_audio=torch.randn(10 * F_, 5, 384), num_frames=10 * F_,
                         settings=SamplerSettings(steps=2))
    next(clips)
    assert len(shapes) == 2  # only the first clip has run
    list(clips)
    assert set(shapes) == short and len(shapes) == 20


def test_speed_curve():
    assert torch.equal(speed_curve(0.5, 3), torch.full((3,), 0.5))
    np.testing.assert_allclose(speed_curve([0.0, 1.0], 3).numpy(), [0.0, 0.5, 1.0])
    with pytest.raises(InputError):
        speed_curve([float("nan"), 1.0], 3)


def test_negative_or_missing_speed_is_refused(model):
    with pytest.raises(InputError, match="rotation speed"):
        generate(model, 4, speed=[0.5, -0.5])
    with pytest.raises(InputError, match="rotation speed"):
        speed_curve(-0.2, 3)
    with pytest.raises(InputError, match="finite"):
        speed_curve(float("nan"), 3)


def test_invalid_settings(model):
    with pytest.raises(InputError, match="steps"):
        generate(model, 4, settings=SamplerSettings(steps=0))
    with pytest.raises(InputError, match="frames per clip"):
        generate(model, 4, settings=SamplerSettings(frames_per_clip=0))
    with pytest.raises(InputError, match="scheduler"):
        generate(model, 4, settings=SamplerSettings(scheduler="nope"))
    with pytest.raises(InputError, match="exceeds"):
        generate(model, 4, settings=SamplerSettings(frames_per_clip=30))
    for bad in (-1, 8):
        with pytest.raises(InputError, match="overlap"):
            generate(model, 2 * F_, settings=SamplerSettings(overlap_frames=bad, frames_per_clip=8 if bad > 0 else None))
    with pytest.raises(InputError, match="overlap"):  # the model's f, and refused even where reuse_motion turns it off
        generate(model, 2 * F_, settings=SamplerSettings(overlap_frames=F_, reuse_motion=False))
    for name, bad in [("reference_cfg", -1.0), ("audio_cfg", float("nan")), ("motion_cfg", float("inf"))]:
        with pytest.raises(InputError, match=name):
            generate(model, 4, settings=SamplerSettings(**{name: bad}))
