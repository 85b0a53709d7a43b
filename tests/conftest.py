import sys
from pathlib import Path

# emo_model is a plain package at the repo root; the repo root itself is the ComfyUI pack and is
# never imported from here (tests of the pack load it the way ComfyUI does).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
