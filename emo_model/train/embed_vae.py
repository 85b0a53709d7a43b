"""Put a fine-tuned decoder into a trained EMO checkpoint, without retraining the model.

    python -m emo_model.train.embed_vae CHECKPOINT VAE OUT

An EMO model is trained on the latents of one encoder (and its latent scaling), so only the decoder
of its VAE may change afterwards: `python -m emo_model.train.vae` with `init_vae` CHECKPOINT and
`decoder_only` fine-tunes it, and this writes OUT = CHECKPOINT's tensors and metadata with VAE's
decoder (every tensor of VAE embedded). A VAE whose encoder, quant_conv or scaling differ from the
checkpoint's embedded ones is refused: it would hand the model latents it never learnt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint_vae, load_emo_model, save_emo_checkpoint
from ..errors import EMOError, InputError


def embed_vae(checkpoint, vae_path, out) -> Path:
    """Write `out` (atomically): `checkpoint` with the VAE of `vae_path` embedded; see the module doc."""
    if Path(out).resolve() == Path(checkpoint).resolve():
        raise InputError(f"{out} is the checkpoint itself: write the result to another file")
    model = load_emo_model(checkpoint)
    trained_with = load_checkpoint_vae(checkpoint)
    if trained_with is None:
        raise InputError(f"{checkpoint} holds no VAE, so which encoder its model learnt from is unknown: "
                         "embed a VAE only into a checkpoint trained with save_vae: true")
    vae = load_checkpoint_vae(vae_path)
    if vae is None:
        raise InputError(f"{vae_path} holds no VAE")
    mismatch = _encoder_mismatch(trained_with, vae)
    if mismatch:
        raise InputError(f"the VAE in {vae_path} is not {checkpoint}'s with another decoder ({mismatch}): the model "
                         "was trained on the latents of its own encoder. Fine-tune that VAE's decoder "
                         f"(python -m emo_model.train.vae with init_vae {checkpoint} and decoder_only true).")
    save_emo_checkpoint(model, out, metadata=model.checkpoint_metadata, vae=vae)
    return Path(out)


def _encoder_mismatch(trained_with, vae) -> str | None:
    def geometry(v):
        return {k: value for k, value in dict(v.config).items() if not k.startswith("_") and k != "scaling_factor"}

    if geometry(trained_with) != geometry(vae):
        return "another geometry"
    if float(trained_with.config.scaling_factor) != float(vae.config.scaling_factor):
        return f"latent scaling {vae.config.scaling_factor} against {trained_with.config.scaling_factor}"
    theirs = {**vae.encoder.state_dict(prefix="encoder."), **vae.quant_conv.state_dict(prefix="quant_conv.")}
    ours = {**trained_with.encoder.state_dict(prefix="encoder."),
            **trained_with.quant_conv.state_dict(prefix="quant_conv.")}
    changed = [k for k in ours if not torch.equal(ours[k], theirs[k])]
    return f"{len(changed)} encoder tensors differ, e.g. {changed[0]}" if changed else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.train.embed_vae", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="trained EMO checkpoint (.safetensors, with its VAE)")
    parser.add_argument("vae", help="VAE file (vae.safetensors of a decoder_only fine-tune) or a checkpoint with one")
    parser.add_argument("out", help="the EMO checkpoint to write")
    args = parser.parse_args(argv)
    try:
        out = embed_vae(args.checkpoint, args.vae, args.out)
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
