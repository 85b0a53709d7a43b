"""The pack imports the way ComfyUI loads it: as a package from its folder path, never via sys.path."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pack_loads_as_a_package_from_its_folder():
    spec = importlib.util.spec_from_file_location("emo_pack_under_test", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
        assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)
        # our nodes/ was imported relative to the pack, not as ComfyUI's top-level `nodes`
        assert "emo_pack_under_test.nodes" in sys.modules
        assert sys.modules.get("nodes") is None or Path(sys.modules["nodes"].__file__).parent != ROOT / "nodes"
    finally:
        sys.modules.pop(spec.name, None)
        sys.modules.pop(spec.name + ".nodes", None)


def test_model_package_imports_without_comfyui():
    import emo_model.pipeline  # noqa: F401
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
