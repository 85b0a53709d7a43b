"""Tests see the pack the way ComfyUI loads it: a package imported from its folder path.

The pack is loaded once as the package `emo_comfyui` (what ComfyUI does with
`custom_nodes/<folder>/__init__.py`), and the name `emo_model` is an alias of
`emo_comfyui.emo_model`, so tests that import `emo_model` and tests of the nodes share one set of
classes. The repo root is never put on sys.path: an absolute `import emo_model` inside the pack
would therefore fail here just as it would in ComfyUI (`test_pack_import` also checks this in a
fresh interpreter).
"""
import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "emo_comfyui"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py


def _load_pack():
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


class _PackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`emo_model[.x]` → the already-loaded `emo_comfyui.emo_model[.x]` module object."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "emo_model" or fullname.startswith("emo_model."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{PACK}.{spec.name}")

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _PackAlias())
_load_pack()
