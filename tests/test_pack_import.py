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


def test_every_module_imports_relative_to_the_pack_in_a_fresh_interpreter(tmp_path):
    """No module may import `emo_model`/`nodes` absolutely: in ComfyUI the pack folder is not on sys.path."""
    import subprocess
    code = f"""
import importlib, importlib.util, pkgutil, sys
root = {str(ROOT)!r}
assert root not in sys.path
spec = importlib.util.spec_from_file_location("some_pack_folder", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules[spec.name] = pack; spec.loader.exec_module(pack)
names = []
for sub in ("emo_model", "nodes", "headless"):
    package = importlib.import_module("some_pack_folder." + sub)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name); names.append(info.name)
assert "emo_model" not in sys.modules and "nodes" not in sys.modules, "absolute import of a pack folder"
assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
print(len(names), len(pack.NODE_CLASS_MAPPINGS))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    modules, nodes = map(int, run.stdout.split())
    assert modules > 30 and nodes >= 10


def test_pyproject_dependencies_are_requirements_txt():
    """The Comfy Registry reads pyproject.toml, ComfyUI-Manager reads requirements.txt: keep them equal."""
    import pytest
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(declared) == sorted(listed)
    assert not any(name.split(">")[0].split("=")[0].lower() in ("torch", "torchvision", "torchaudio") for name in listed)
