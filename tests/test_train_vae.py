"""The small-VAE trainer (python -m emo_model.train.vae): it learns, its file feeds the EMO trainer,
decoder-only fine-tuning leaves the latents untouched, and bad configs are refused."""
import json

import pytest
import torch

from emo_model.checkpoint import (load_checkpoint_vae, load_emo_model, read_emo_checkpoint, save_emo_checkpoint,
                                  save_vae_file)
from emo_model.errors import InputError
from emo_model.train import TrainConfig, train
from emo_model.train.config import ConfigError
from emo_model.train.embed_vae import embed_vae
from emo_model.train.embed_vae import main as embed_main
from emo_model.train.trainer import step_generator
from emo_model.train.vae import (VAETrainConfig, load_frames, load_mouth_masks, main, reconstruction_psnr,
                                 training_batch)
from emo_model.vae import LatentCodec, vae_scale_factor
from helpers import make_blob_dataset

BASE = {"resolution": 64, "block_out_channels": [8, 16, 16], "norm_num_groups": 8, "batch_size": 4,
        "lr": 2e-3, "lr_warmup_steps": 5, "log_every": 5, "seed": 0}


def _config(tmp_path, dataset, name, **changes):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"data": [str(dataset)], "output_dir": str(tmp_path / name), **BASE, **changes}))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("vae_data"))


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae_runs")
    assert main(["--config", str(_config(tmp, dataset, "vae", max_steps=60))]) == 0
    return tmp


def test_vae_learns_and_records_its_scaling(trained, dataset):
    vae = load_checkpoint_vae(trained / "vae/vae.safetensors")
    assert vae_scale_factor(vae) == 4
    losses = [json.loads(line)["loss"] for line in (trained / "vae/loss.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0]
    frames = load_frames([str(dataset)], 64)
    latents = LatentCodec(vae).encode(frames[:16].float() / 255)
    assert 0.5 < float(latents.std()) < 2.0  # scaling_factor = 1 / std of the training latents
    assert (trained / "vae/loss.png").is_file()


def test_decoder_only_fine_tuning_keeps_latents_and_improves_the_decoder(trained, dataset, tmp_path):
    start = trained / "vae/vae.safetensors"
    assert main(["--config", str(_config(tmp_path, dataset, "dec", max_steps=40, lr=5e-4, init_vae=str(start),
                                          decoder_only=True))]) == 0
    before, after = load_checkpoint_vae(start), load_checkpoint_vae(tmp_path / "dec/vae.safetensors")
    frames = load_frames([str(dataset)], 64)[:16]
    pixels = frames.float() / 255
    assert torch.equal(LatentCodec(before).encode(pixels), LatentCodec(after).encode(pixels))
    assert before.config.scaling_factor == after.config.scaling_factor
    assert not torch.equal(before.decoder.conv_out.weight, after.decoder.conv_out.weight)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "dec/loss.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    assert reconstruction_psnr(after, frames) > reconstruction_psnr(before, frames) - 1.0


GEOMETRY = {"unet": {"block_out_channels": [32, 64], "attention_levels": [True, False], "layers_per_block": 1,
                     "heads": 2, "cross_attention_dim": 32, "norm_num_groups": 8, "motion_heads": 2,
                     "motion_max_frames": 24},
            "audio_tokens": 4, "audio_token_dim": 32, "audio_hidden": 64, "speed_dim": 32, "speed_hidden": 32,
            "face_locator_channels": [8, 16, 16], "vae_scale_factor": 4}


def _emo_stage1(trained, dataset, out, steps=2):
    return dict(stage=1, data=[str(dataset)], output_dir=str(out), geometry=GEOMETRY, resolution=64,
                vae=str(trained / "vae/vae.safetensors"), save_vae=True, batch_size=2, max_steps=steps,
                save_every=steps)


def test_vae_file_trains_an_emo_stage_at_its_own_scale_factor(trained, dataset, tmp_path):
    values = _emo_stage1(trained, dataset, tmp_path / "s1")
    final = train(TrainConfig.from_dict(values))
    assert vae_scale_factor(load_checkpoint_vae(final)) == 4
    with pytest.raises(ConfigError, match="vae_scale_factor"):
        train(TrainConfig.from_dict({**values, "geometry": "tiny", "output_dir": str(tmp_path / "s1b")}))


def test_hue_augment_turns_a_share_of_the_training_frames_at_constant_luma(tmp_path, dataset):
    frames = load_frames([str(dataset)], 64)
    plain = VAETrainConfig.from_file(_config(tmp_path, dataset, "plain", batch_size=64))
    turned = VAETrainConfig.from_file(_config(tmp_path, dataset, "hue", batch_size=64, hue_augment=1.0))
    half = VAETrainConfig.from_file(_config(tmp_path, dataset, "half", batch_size=64, hue_augment=0.5))
    g = lambda: step_generator(0, 3, 0, 0)
    original, weights = training_batch(frames, plain, g())
    assert weights is None
    index = torch.randint(len(frames), (64,), generator=g())
    assert torch.equal(original, frames[index].float() / 127.5 - 1)  # off: the draws and values of before
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    for config, share in ((turned, 1.0), (half, 0.5)):
        batch, _ = training_batch(frames, config, g())
        assert batch.min() >= -1 and batch.max() <= 1
        changed = (batch - original).abs().flatten(1).amax(1) > 0.05
        assert 0.25 * 64 < int(changed.sum()) <= share * 64 + 0.25 * 64
        unclipped = (batch > -1 + 1e-4).all(1, keepdim=True) & (batch < 1 - 1e-4).all(1, keepdim=True)
        luma_diff = ((batch - original) * luma).sum(1, keepdim=True)[unclipped]
        assert luma_diff.abs().max() < 1e-4  # brightness kept where nothing clipped


def test_mouth_loss_weight_weighs_the_drawn_frames_mouth_regions_and_keeps_the_draws(tmp_path, dataset):
    frames, mouths = load_frames([str(dataset)], 64), load_mouth_masks([str(dataset)], 64)
    assert mouths.shape == (len(frames), 1, 64, 64) and mouths.dtype == torch.bool
    # The blob clips' face box is x 16..48, y 12..52: MOUTH_REGION (0.25, 0.6, 0.75, 0.95) of it.
    rows, cols = torch.nonzero(mouths[0, 0], as_tuple=True)
    assert (int(cols.min()), int(cols.max()), int(rows.min()), int(rows.max())) == (24, 39, 36, 49)
    plain = VAETrainConfig.from_file(_config(tmp_path, dataset, "plain", batch_size=8))
    mouth = VAETrainConfig.from_file(_config(tmp_path, dataset, "mouth", batch_size=8, mouth_loss_weight=20))
    g = lambda: step_generator(0, 5, 0, 0)
    pixels, _ = training_batch(frames, plain, g())
    weighted, weights = training_batch(frames, mouth, g(), mouths)
    assert torch.equal(weighted, pixels)  # the same frames drawn
    index = torch.randint(len(frames), (8,), generator=g())
    assert torch.equal(weights, torch.where(mouths[index], 21.0, 1.0))


def test_mouth_loss_weight_reconstructs_the_mouth_region_better(trained, dataset, tmp_path):
    assert main(["--config", str(_config(tmp_path, dataset, "mouth", max_steps=60, mouth_loss_weight=20))]) == 0
    frames, mouths = load_frames([str(dataset)], 64), load_mouth_masks([str(dataset)], 64)

    def mouth_error(path):
        codec = LatentCodec(load_checkpoint_vae(path))
        decoded = codec.decode(codec.encode(frames.float() / 255)).permute(0, 3, 1, 2).float()
        return float((decoded - frames.float()).abs()[mouths.expand_as(frames)].mean())

    # The same 60 steps and draws as the `trained` run, the mouth region weighing 21x.
    assert mouth_error(tmp_path / "mouth/vae.safetensors") < 0.8 * mouth_error(trained / "vae/vae.safetensors")


def test_embed_vae_gives_a_trained_checkpoint_a_fine_tuned_decoder_and_refuses_another_encoder(
        trained, dataset, tmp_path):
    checkpoint = train(TrainConfig.from_dict(_emo_stage1(trained, dataset, tmp_path / "s1", steps=1)))
    assert main(["--config", str(_config(tmp_path, dataset, "dec", max_steps=10, lr=5e-4, init_vae=str(checkpoint),
                                          decoder_only=True))]) == 0
    decoder_file, out = tmp_path / "dec/vae.safetensors", tmp_path / "swapped.safetensors"
    assert embed_main([str(checkpoint), str(decoder_file), str(out)]) == 0
    _, before, meta_before = read_emo_checkpoint(checkpoint)
    _, after, meta_after = read_emo_checkpoint(out)
    assert before.keys() == after.keys() and meta_before == {**meta_after, "vae_config": meta_before["vae_config"]}
    fine_tuned = {f"vae.{k}": v for k, v in load_checkpoint_vae(decoder_file).state_dict().items()}
    for key in before:
        expected = fine_tuned[key] if key.startswith("vae.") else before[key]  # the encoder's are the same
        assert torch.equal(after[key], expected), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("vae.decoder."))

    other = load_checkpoint_vae(decoder_file)
    other.encoder.conv_in.weight.data += 0.01
    save_vae_file(other, tmp_path / "other_encoder.safetensors")
    rescaled = load_checkpoint_vae(decoder_file)
    rescaled.register_to_config(scaling_factor=2.0)
    save_vae_file(rescaled, tmp_path / "rescaled.safetensors")
    for name, message in (("other_encoder", "encoder tensors differ"), ("rescaled", "latent scaling")):
        with pytest.raises(InputError, match=message):
            embed_vae(checkpoint, tmp_path / f"{name}.safetensors", tmp_path / f"{name}_out.safetensors")
        assert not (tmp_path / f"{name}_out.safetensors").exists()
    with pytest.raises(InputError, match="another file"):
        embed_vae(checkpoint, decoder_file, checkpoint)
    bare = tmp_path / "bare.safetensors"
    save_emo_checkpoint(load_emo_model(checkpoint), bare)
    with pytest.raises(InputError, match="holds no VAE"):
        embed_vae(bare, decoder_file, tmp_path / "bare_out.safetensors")


def test_bad_vae_configs_are_refused(tmp_path, dataset):
    with pytest.raises(ConfigError, match="init_vae"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "a", decoder_only=True))
    with pytest.raises(ConfigError, match="only the keys"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "b", colour="red"))
    with pytest.raises(ConfigError, match="norm_num_groups"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "c", block_out_channels=[8, 12, 16]))
    with pytest.raises(ConfigError, match="lr_schedule"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "d", lr_schedule="linear"))
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "e", lr_warmup_steps=-2))
    with pytest.raises(ConfigError, match="below max_steps"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "f", lr_schedule="cosine", lr_warmup_steps=9, max_steps=9))
    with pytest.raises(ConfigError, match="hue_augment"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "g", hue_augment=1.5))
    with pytest.raises(ConfigError, match="mouth_loss_weight"):
        VAETrainConfig.from_file(_config(tmp_path, dataset, "h", mouth_loss_weight=-1))
