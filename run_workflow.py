"""Run an EMO workflow headless: `python run_workflow.py workflows/emo_basic_api.json --output out.mp4`.

The pack is loaded the way ComfyUI loads it (a package from its folder), so the same node classes
run here and in ComfyUI. See headless/cli.py for the options (`--help`).
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent
PACK = "emo_comfyui"


def load_pack():
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, PACK_DIR / "__init__.py",
                                                      submodule_search_locations=[str(PACK_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


if __name__ == "__main__":
    load_pack()
    sys.exit(importlib.import_module(f"{PACK}.headless.cli").main())
