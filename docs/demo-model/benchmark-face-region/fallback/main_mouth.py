"""The README's main command (workflows/emo_basic.json on the bundled portrait and 5 s speech) with a
given checkpoint and face detector: seconds taken and the mouth-to-speech correlation, measured as
tests/test_demo_model.py measures it. Usage: main_mouth.py CHECKPOINT DETECTOR OUT.mp4"""
import shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests"))
import conftest  # noqa: F401  (loads the pack as ComfyUI does: emo_comfyui)
import test_demo_model as T

checkpoint, detector, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with tempfile.TemporaryDirectory() as models:
    (Path(models) / "emo").mkdir()
    shutil.copy(checkpoint, Path(models) / "emo" / "candidate.safetensors")
    started = time.perf_counter()
    code = T.cli.main([str(T.WORKFLOW), "--device", "cpu", "--quiet", "--output", str(out), "--models-dir", models,
                       "--set", "1.emo_checkpoint=candidate.safetensors", "--set", f"6.detector={detector}"])
    seconds = time.perf_counter() - started
assert code == 0
measured, truth = T._mouth_and_speech(out, T.probe_video(out)["frames"] / T.probe_video(out)["fps"])
print(f"{checkpoint} detector {detector}: {seconds:.0f} s, mouth-to-speech r {np.corrcoef(measured, truth)[0, 1]:.3f}")
