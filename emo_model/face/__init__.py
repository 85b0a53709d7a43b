"""Face detection and face-region masks (for the Face Locator and for training-data preparation).

Optional backends are imported only by `make_detector`, so importing this package never fails.
"""
from .detectors import (DETECTOR_NAMES, FaceBox, FaceDetector, LandmarkDetector, MediaPipeDetector,
                        SkimageCascadeDetector, YuFaceDetector, available_detectors, make_detector,
                        to_uint8_rgb)
from .landmarks import MediaPipeFaceMesh, landmarks_available, make_landmark_detector
from .mask import detect_face_box, face_mask_for_image, face_region_mask, fallback_face_box, union_box

__all__ = [
    "DETECTOR_NAMES", "FaceBox", "FaceDetector", "LandmarkDetector", "MediaPipeDetector",
    "SkimageCascadeDetector", "YuFaceDetector", "available_detectors", "make_detector", "to_uint8_rgb",
    "MediaPipeFaceMesh", "landmarks_available", "make_landmark_detector",
    "detect_face_box", "face_mask_for_image", "face_region_mask", "fallback_face_box", "union_box",
]
