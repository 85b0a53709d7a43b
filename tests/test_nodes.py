"""Every EMO node, called as ComfyUI calls it (outside ComfyUI), on a tiny model saved to a models folder."""
import logging
import sys

import pytest
import torch
from safetensors.torch import save_file

from emo_model.audio import decode_audio
from emo_model.checkpoint import save_emo_checkpoint
from emo_model.errors import AudioError, InputError, WeightsError
from emo_model.pipeline import EMOPipeline
from emo_model.sampler import SamplerSettings
from emo_model.video import probe_video, read_video
from helpers import tiny_model, tiny_vae, write_wav

PACK = sys.modules["emo_comfyui"]
NODES = PACK.NODE_CLASS_MAPPINGS
host = PACK.nodes.host
SIZE = 64


def node(name):
    return NODES[name]()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy")
    for sub in ("models/emo", "models/loras", "input", "output"):
        (root / sub).mkdir(parents=True)
    save_emo_checkpoint(tiny_model(), root / "models/emo/tiny.safetensors", vae=tiny_vae())
    save_emo_checkpoint(tiny_model(), root / "models/emo/no_vae.safetensors")
    write_wav(root / "input/speech.wav", 1.0, rate=44100, channels=2)
    previous = host.configure(models_dir=root / "models", input_dir=root / "input", output_dir=root / "output",
                              device="cpu")
    yield root
    host.configure(**previous.__dict__)


@pytest.fixture(scope="module")
def emo(folders):
    return node("EMO_ModelLoader").load("tiny.safetensors", "(none)", "(none)", "(from EMO checkpoint)", "fp32")[0]


@pytest.fixture(scope="module")
def encoder(folders):
    return node("EMO_AudioEncoderLoader").load("whisper-tiny.en (packaged)")[0]


@pytest.fixture(scope="module")
def portrait():
    skimage_data = pytest.importorskip("skimage.data")
    return torch.from_numpy(skimage_data.astronaut()).float().div(255)[None]


@pytest.fixture(scope="module")
def speech(folders):
    return node("EMO_LoadAudio").load("speech.wav", 0.0, 0.0)[0]


@pytest.fixture(scope="module")
def embeds(speech, encoder):
    return node("EMO_AudioEncode").encode(speech, 10.0, audio_encoder=encoder)


@pytest.fixture(scope="module")
def reference(emo, portrait):
    return node("EMO_ReferenceNet").encode(emo, portrait, SIZE, SIZE, "crop")[0]


SAMPLER = dict(seed=3, steps=2, scheduler="ddim", reference_cfg=2.0, audio_cfg=3.0, frames_per_clip=4,
               motion_frame_count=2, speed=0.5)


# --- the registry ------------------------------------------------------------------------------
def test_every_node_is_a_complete_v1_node_with_prefixed_id_and_tooltips(folders):
    assert len(NODES) >= 10 and set(NODES) == set(PACK.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in NODES.items():
        assert name.startswith("EMO_"), name
        assert callable(getattr(cls, cls.FUNCTION)) and cls.CATEGORY == "EMO" and cls.DESCRIPTION
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
        for section in cls.INPUT_TYPES().values():
            for input_name, spec in section.items():
                assert spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        for kind in cls.RETURN_TYPES:  # our payloads never reuse a core type name
            assert kind in ("IMAGE", "MASK", "LATENT", "AUDIO", "VIDEO", "INT", "FLOAT") or kind.startswith("EMO_")


# --- loaders -----------------------------------------------------------------------------------
def test_model_loader_lists_and_loads_from_the_models_folder(folders, emo):
    choices = NODES["EMO_ModelLoader"].INPUT_TYPES()["required"]["emo_checkpoint"][0]
    assert {"tiny.safetensors", "no_vae.safetensors"} <= set(choices)
    assert emo.model.dtype == torch.float32 and emo.vae is not None and emo.patchers == ()


def test_missing_model_file_names_the_file_and_the_folder(folders):
    with pytest.raises(FileNotFoundError, match=r"'gone.safetensors' not found.*models/emo"):
        node("EMO_ModelLoader").load("gone.safetensors", "(none)", "(none)", "(from EMO checkpoint)", "auto")
    with pytest.raises(WeightsError, match="holds no VAE"):
        node("EMO_ModelLoader").load("no_vae.safetensors", "(none)", "(none)", "(from EMO checkpoint)", "auto")


def test_model_loader_lists_the_demo_first_and_refuses_a_vae_of_another_factor(folders):
    from diffusers import AutoencoderKL
    four_x = AutoencoderKL(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4,
                           down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    save_emo_checkpoint(tiny_model(), folders / "models/emo/mismatch.safetensors", vae=four_x)
    choices = NODES["EMO_ModelLoader"].INPUT_TYPES()["required"]["emo_checkpoint"][0]
    assert choices[0] == "emo-demo.safetensors" and choices[1:] == sorted(choices[1:])  # the bundled model
    with pytest.raises(WeightsError, match="down-samples 4x"):
        node("EMO_ModelLoader").load("mismatch.safetensors", "(none)", "(none)", "(from EMO checkpoint)", "fp32")


def test_audio_encoder_loader_offers_the_packaged_whisper(encoder):
    assert "whisper-tiny.en (packaged)" in NODES["EMO_AudioEncoderLoader"].INPUT_TYPES()["required"]["encoder"][0]
    assert (encoder.encoder.num_layers, encoder.encoder.hidden_size) == (5, 384) and encoder.patchers == ()


# --- audio -------------------------------------------------------------------------------------
def test_load_audio_keeps_rate_and_channels_and_cuts_a_span(folders, speech):
    assert speech["sample_rate"] == 44100 and speech["waveform"].shape == (1, 2, 44100)
    span = node("EMO_LoadAudio").load("speech.wav", 0.25, 0.5)[0]
    assert span["waveform"].shape == (1, 2, 22050)
    full, _ = decode_audio(folders / "input/speech.wav")
    assert torch.allclose(span["waveform"][0], full[:, 11025:33075], atol=1e-4)
    assert NODES["EMO_LoadAudio"].VALIDATE_INPUTS("missing.wav") != True  # noqa: E712 (a message)
    before = NODES["EMO_LoadAudio"].IS_CHANGED("speech.wav")
    write_wav(folders / "input/other.wav", 0.5)
    assert NODES["EMO_LoadAudio"].IS_CHANGED("other.wav") != before


def test_audio_encode_gives_one_feature_set_per_frame_and_the_matching_audio(embeds, speech):
    features, frames, audio = embeds
    assert frames == 10 and features.num_frames == 10 and features.features.shape == (10, 5, 384)
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, 44100)
    _, frames_29, audio_29 = node("EMO_AudioEncode").encode(speech, 29.97, audio_encoder=None,
                                                            audio_encoder_output=_core_output(1.0))
    assert frames_29 == 29 and audio_29["waveform"].shape[-1] == round(29 * 44100 / 29.97)


def _core_output(seconds, layers=5, dim=384):
    steps = int(seconds * 50)
    return {"encoded_audio": torch.randn(1, steps, dim),
            "encoded_audio_all_layers": tuple(torch.randn(1, steps, dim) for _ in range(layers))}


def test_core_audio_encoder_output_is_accepted_and_shape_mismatch_is_explained(speech, emo, reference):
    embeds, frames, _ = node("EMO_AudioEncode").encode(speech, 10.0, audio_encoder_output=_core_output(1.0, 13, 768))
    assert embeds.features.shape == (frames, 13, 768)
    with pytest.raises(InputError, match="5 layers x 384"):
        node("EMO_Sampler").sample(emo, reference, embeds, **SAMPLER)


def test_bad_audio_inputs_are_refused(speech, encoder):
    short = {"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}
    with pytest.raises(AudioError, match="shorter than one video frame"):
        node("EMO_AudioEncode").encode(short, 25.0, audio_encoder=encoder)
    with pytest.raises(InputError, match="fps must be > 0"):
        node("EMO_AudioEncode").encode(speech, 0.0, audio_encoder=encoder)
    with pytest.raises(InputError, match="connect an EMO audio encoder"):
        node("EMO_AudioEncode").encode(speech, 25.0)


# --- portrait ----------------------------------------------------------------------------------
def test_face_mask_finds_the_face_and_scales_or_takes_a_user_mask(portrait):
    (mask,) = node("EMO_FaceMask").make(portrait, "auto", 1.0)
    assert mask.shape == (1, 512, 512)
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    assert 150 < xs.float().mean() < 280 and 60 < ys.float().mean() < 220  # the astronaut's face
    (wide,) = node("EMO_FaceMask").make(portrait, "auto", 2.0)
    assert 3.5 < wide.sum() / mask.sum() < 4.1  # area grows with scale², pixel-rounded
    user = torch.zeros(1, 100, 100)
    user[:, 10:50, 20:60] = 1
    (resized,) = node("EMO_FaceMask").make(portrait, "auto", 1.0, mask=user)
    assert resized.shape == (1, 512, 512) and abs(resized.sum() / (512 * 512) - 0.16) < 0.01


def test_no_face_gives_the_documented_fallback_and_a_warning(caplog):
    blank = torch.full((1, 128, 96, 3), 0.5)
    with caplog.at_level(logging.WARNING):
        default_scale = node("EMO_FaceMask").INPUT_TYPES()["required"]["scale"][1]["default"]
        (mask,) = node("EMO_FaceMask").make(blank, "auto", default_scale)
    assert "no face found" in caplog.text
    assert mask.shape == (1, 128, 96) and abs(mask.mean() - 0.5 * 0.6) < 0.02  # central 50% x 60%


def test_reference_net_node_runs_referencenet_once_and_keeps_the_mask_on_the_face(emo, portrait):
    face = torch.zeros(1, 512, 512)
    face[:, 100:200, 150:250] = 1
    wide = torch.cat([torch.ones(1, 512, 256, 3), portrait, torch.ones(1, 512, 256, 3)], dim=2)  # 512 x 1024
    wide_mask = torch.nn.functional.pad(face, (256, 256))
    ref, image, mask = node("EMO_ReferenceNet").encode(emo, wide, SIZE, SIZE, "crop", face_mask=wide_mask)
    assert image.shape == (1, SIZE, SIZE, 3) and mask.shape == (1, SIZE, SIZE)
    # crop keeps the central 512 x 512: the mask must sit where the face is in the cropped portrait
    expected = torch.nn.functional.interpolate(face[None], size=(SIZE, SIZE), mode="bilinear")[0]
    assert (mask - expected).abs().mean() < 0.02
    with torch.inference_mode():
        direct = emo.model.reference_features(ref.latents)
    assert len(ref.features) == len(direct) and all(torch.equal(a, b) for a, b in zip(ref.features, direct))


# --- sampler -----------------------------------------------------------------------------------
def test_sampler_node_matches_the_pipeline_and_its_latent_decodes_with_a_plain_vae(emo, reference, embeds, encoder,
                                                                                     portrait):
    features, frames, _ = embeds
    images, latent, fps = node("EMO_Sampler").sample(emo, reference, features, **SAMPLER)
    assert images.shape == (frames, SIZE, SIZE, 3) and images.dtype == torch.float32 and fps == 10.0
    assert 0 <= images.min() and images.max() <= 1
    settings = SamplerSettings(steps=2, reference_cfg=2.0, audio_cfg=3.0, seed=3, frames_per_clip=4, motion_frames=2)
    pipe = EMOPipeline(emo.model, emo.vae, encoder.encoder)
    clips = list(pipe.iter_clips(portrait[0], pipe.prepare_audio(torch.from_numpy(
        _mono16k(embeds[2]))), fps=10, height=SIZE, width=SIZE, face_mask=reference.face_mask[0, 0],
        speed=0.5, settings=settings))
    direct = torch.cat([c.frames for c in clips]).float() / 255
    assert torch.allclose(images, direct, atol=1 / 255 + 1e-6)
    # core VAEDecode decodes LATENT samples as they are (unscaled): same frames
    with torch.inference_mode():
        decoded = emo.vae.decode(latent["samples"][:2]).sample
    diff = ((decoded.permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1) - images[:2]
    assert diff.abs().max() < 1 / 255, diff.abs().max()


def _mono16k(audio):
    from emo_model.audio import to_mono_16k
    return to_mono_16k(audio["waveform"], audio["sample_rate"]).numpy()


def test_sampler_reports_progress_per_step_and_cancel_stops_it(emo, reference, embeds):
    seen = []
    host.configure(progress=lambda done, total: seen.append((done, total)))
    try:
        node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)
    finally:
        host.configure(progress=None)
    clips = -(-10 // SAMPLER["frames_per_clip"])
    assert seen == [(i, clips * SAMPLER["steps"]) for i in range(1, clips * SAMPLER["steps"] + 1)]
    calls = []
    host.configure(cancelled=lambda: calls.append(1) or len(calls) >= 3)
    try:
        with pytest.raises(InterruptedError):
            node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)
    finally:
        host.configure(cancelled=None)
    assert len(calls) == 3  # stopped at the third step


def test_speed_number_curve_and_off_change_the_video(emo, reference, embeds):
    sample = node("EMO_Sampler").sample
    base = sample(emo, reference, embeds[0], **SAMPLER)[0]
    off = sample(emo, reference, embeds[0], **{**SAMPLER, "speed": -1.0})[0]
    curve = sample(emo, reference, embeds[0], **SAMPLER, speed_curve="0:0.5, 0.5s:2.0")[0]
    flat = sample(emo, reference, embeds[0], **SAMPLER, speed_curve="0.5")[0]
    assert not torch.equal(base, off) and not torch.equal(base, curve)
    assert torch.equal(base, flat)  # a one-number curve is the constant speed


def test_speed_curve_text():
    parse = PACK.nodes.sampler.parse_speed_curve
    assert parse("", 5, 25) is None
    assert torch.allclose(parse("0:0, 4:1", 5, 25), torch.tensor([0, .25, .5, .75, 1]))
    assert torch.allclose(parse("0.1s:1, 0.3s:3", 6, 10), torch.tensor([1, 1, 2, 3, 3, 3.]))
    assert torch.allclose(parse("0, 1", 3, 25), torch.tensor([0, .5, 1]))
    with pytest.raises(InputError, match="speed curve"):
        parse("fast", 5, 25)


def test_motion_frames_continue_an_earlier_generation(emo, reference, embeds, portrait):
    first = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    (motion,) = node("EMO_MotionFrames").encode(emo, reference, first, 2)
    assert motion.latents.shape == (2, 4, SIZE // 8, SIZE // 8)
    fresh = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    continued = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, motion_frames=motion)[0]
    assert torch.equal(first, fresh) and not torch.equal(fresh[:4], continued[:4])  # the first clip continues


def test_motion_cfg_changes_only_the_clips_that_have_motion_frames(emo, reference, embeds):
    f = SAMPLER["frames_per_clip"]
    plain = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    guided = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, motion_cfg=3.0)[0]
    assert torch.equal(plain[:f], guided[:f]) and not torch.equal(plain[f:], guided[f:])


def test_shared_noise_changes_only_the_clips_after_the_first(emo, reference, embeds):
    f = SAMPLER["frames_per_clip"]
    plain = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, overlap_frames=1)[0]
    shared = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, overlap_frames=1, shared_noise=True)[0]
    assert shared.shape == plain.shape
    assert torch.equal(plain[:f], shared[:f]) and not torch.equal(plain[f:], shared[f:])


def test_guidance_rescale_reaches_the_sampler(emo, reference, embeds):
    plain = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    rescaled = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, guidance_rescale=1.0)[0]
    assert rescaled.shape == plain.shape and not torch.equal(plain, rescaled)
    with pytest.raises(InputError, match="guidance_rescale"):
        node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, guidance_rescale=2.0)


def test_color_match_node_shifts_the_frames_onto_the_portraits_colour(emo, portrait, reference, embeds):
    images = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    _, shown, _ = node("EMO_ReferenceNet").encode(emo, portrait, SIZE, SIZE, "crop")
    matched = node("EMO_ColorMatch").match(images, shown, "video", 1.0)[0]
    assert matched.shape == images.shape and matched.dtype == images.dtype
    assert (matched.mean(dim=(0, 1, 2)) - shown[0].mean(dim=(0, 1))).abs().max() < 0.02  # up to clamping
    assert torch.equal(node("EMO_ColorMatch").match(images, shown, "frame", 0.0)[0], images)
    with pytest.raises(InputError, match="strength"):
        node("EMO_ColorMatch").match(images, shown, "video", -0.5)
    with pytest.raises(InputError, match="reference must be one RGB image"):  # a batch is not one portrait
        node("EMO_ColorMatch").match(images, shown.expand(2, -1, -1, -1), "video", 1.0)


def test_overlap_frames_keep_the_length_and_change_only_the_clips_after_the_first(emo, reference, embeds):
    f, seen = SAMPLER["frames_per_clip"], []
    plain = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    host.configure(progress=lambda done, total: seen.append((done, total)))
    try:
        overlapped = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, overlap_frames=2)[0]
    finally:
        host.configure(progress=None)
    assert overlapped.shape == plain.shape
    assert torch.equal(plain[:f], overlapped[:f]) and not torch.equal(plain[f:], overlapped[f:])
    clips = 1 + -(-(embeds[0].num_frames - f) // (f - 2))  # f new frames, then f - 2 per clip
    assert seen[-1] == (clips * SAMPLER["steps"], clips * SAMPLER["steps"])
    with pytest.raises(InputError, match="overlap"):
        node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, overlap_frames=f)


def test_progress_counts_the_clips_when_given_motion_frames_are_fewer_than_motion_plus_overlap(emo, reference, embeds):
    """n = 2, o = 2: with 2 given frames the first clip takes both as motion frames and holds none; with 3,
    it holds 1. The progress total must count the clips that really run."""
    Motion = PACK.nodes.bundle.Motion
    seen = []
    host.configure(progress=lambda done, total: seen.append((done, total)))
    try:
        for given in (1, 2, 3, 6):
            seen.clear()
            motion = Motion(torch.randn(given, 4, SIZE // 8, SIZE // 8))
            node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER, overlap_frames=2, motion_frames=motion)
            assert seen[-1][0] == seen[-1][1], given
    finally:
        host.configure(progress=None)


def test_sampler_settings_are_checked(emo, reference, embeds):
    with pytest.raises(InputError, match="steps must be >= 1"):
        node("EMO_Sampler").sample(emo, reference, embeds[0], **{**SAMPLER, "steps": 0})
    with pytest.raises(InputError, match="frames per clip"):
        node("EMO_Sampler").sample(emo, reference, embeds[0], **{**SAMPLER, "frames_per_clip": 0})


# --- LoRA ----------------------------------------------------------------------------------------
def test_lora_changes_the_video_while_applied_and_leaves_the_model_untouched(folders, emo, reference, embeds):
    target = "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    layer = emo.model.backbone.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    g = torch.Generator().manual_seed(0)
    save_file({f"lora_unet_{target}.lora_down.weight": torch.randn(4, layer.in_features, generator=g),
               f"lora_unet_{target}.lora_up.weight": torch.randn(layer.out_features, 4, generator=g),
               f"lora_unet_{target}.alpha": torch.tensor(4.0),
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 8)},
              folders / "models/loras/style.safetensors")
    assert "style.safetensors" in NODES["EMO_LoraLoader"].INPUT_TYPES()["required"]["lora_name"][0]
    before = layer.weight.detach().clone()
    plain = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    (styled_model,) = node("EMO_LoraLoader").apply(emo, "style.safetensors", 1.0, 0.0)
    styled = node("EMO_Sampler").sample(styled_model, reference, embeds[0], **SAMPLER)[0]
    assert not torch.equal(plain, styled)
    assert torch.equal(layer.weight, before)  # merged only while sampling
    again = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    assert torch.equal(plain, again)  # the loader's input model is unchanged
    (zero,) = node("EMO_LoraLoader").apply(emo, "style.safetensors", 0.0, 0.0)
    assert torch.equal(node("EMO_Sampler").sample(zero, reference, embeds[0], **SAMPLER)[0], plain)


# --- video ---------------------------------------------------------------------------------------
def test_video_combine_writes_an_mp4_with_sound_and_a_preview(folders, emo, reference, embeds):
    images = node("EMO_Sampler").sample(emo, reference, embeds[0], **SAMPLER)[0]
    out = node("EMO_VideoCombine").combine(images, 10.0, "EMO/test", 19, audio=embeds[2])
    preview = out["ui"]["images"][0]
    assert preview == {"filename": "test_00001.mp4", "subfolder": "EMO", "type": "output"}
    path = folders / "output/EMO/test_00001.mp4"
    assert out["result"][0].path == path
    info = probe_video(path)
    assert info["frames"] == 10 and info["has_audio"] and info["video_codec"] == "h264"
    assert abs(read_video(path).audio.shape[1] / read_video(path).sample_rate - 1.0) < 0.03
    second = node("EMO_VideoCombine").combine(images, 10.0, "EMO/test", 19)
    assert second["ui"]["images"][0]["filename"] == "test_00002.mp4"


def test_video_combine_refuses_bad_prefix_and_unwritable_folder(folders, tmp_path):
    images = torch.zeros(2, 16, 16, 3)
    with pytest.raises(InputError, match="relative name"):
        node("EMO_VideoCombine").combine(images, 10.0, "../escape", 19)
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the output folder should be")
    previous = host.configure(output_dir=blocked)
    try:
        with pytest.raises(InputError, match="cannot create the output folder"):
            node("EMO_VideoCombine").combine(images, 10.0, "sub/clip", 19)
    finally:
        host.configure(**previous.__dict__)
    assert [p.name for p in tmp_path.rglob("*")] == ["not_a_folder"]
