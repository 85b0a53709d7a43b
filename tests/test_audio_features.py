"""Frame alignment rules with small hand-computed cases."""

import pytest
import torch

from emo_model.audio import features_to_fps, frame_windows, num_video_frames
from emo_model.errors import AudioError


def test_num_video_frames_counts_fully_covered_frames():
    assert num_video_frames(16000, 16000, 25) == 25
    assert num_video_frames(15999, 16000, 25) == 24  # the 25th frame is not fully covered
    assert num_video_frames(24000, 16000, 30) == 45
    assert num_video_frames(16000 * 7, 16000, 29.97) == 209  # 209.79
    assert num_video_frames(100, 16000, 25) == 0


def test_features_to_fps_samples_frame_centres():
    feats = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(4, 1, 1)
    # 50 Hz features, 25 fps: frame i centre sits at feature index 2i + 0.5; the last is clamped.
    assert features_to_fps(feats, 50, 25, 3).flatten().tolist() == [5.0, 25.0, 30.0]
    # Same rate: identity.
    assert torch.equal(features_to_fps(feats, 50, 50, 4), feats)
    # 100 fps: index 0.5i - 0.25 -> -0.25 (clamped), 0.25, 0.75, 1.25.
    assert features_to_fps(feats, 50, 100, 4).flatten().tolist() == [0.0, 2.5, 7.5, 12.5]


def test_features_to_fps_keeps_layers_and_channels():
    feats = torch.arange(5 * 3 * 2, dtype=torch.float32).view(5, 3, 2)
    out = features_to_fps(feats, 50, 25, 2)
    assert out.shape == (2, 3, 2)
    assert torch.allclose(out[0], 0.5 * (feats[0] + feats[1]))
    assert torch.allclose(out[1], 0.5 * (feats[2] + feats[3]))
    with pytest.raises(AudioError):
        features_to_fps(torch.zeros(0, 3, 2), 50, 25, 2)


def test_frame_windows_replicate_edges():
    frames = torch.arange(5, dtype=torch.float32).view(5, 1, 1)
    windows = frame_windows(frames, radius=2)
    assert windows.shape == (5, 5, 1, 1)
    assert windows.flatten(1).tolist() == [
        [0, 0, 0, 1, 2],
        [0, 0, 1, 2, 3],
        [0, 1, 2, 3, 4],
        [1, 2, 3, 4, 4],
        [2, 3, 4, 4, 4],
    ]
    assert torch.equal(frame_windows(frames, radius=0), frames[:, None])
    assert frame_windows(frames[:1], radius=1).flatten().tolist() == [0, 0, 0]


def test_frame_windows_for_a_subset_of_frames_match_the_full_windows():
    feats = torch.randn(11, 2, 3)
    frames = torch.tensor([0, 4, 9, 10])
    torch.testing.assert_close(frame_windows(feats, 2, frames), frame_windows(feats, 2)[frames])
