"""Reading, atomic writing and strict loading of state dicts (emo_model.weights.files)."""
import os

import pytest
import torch
from safetensors import safe_open

from emo_model.errors import WeightsError
from emo_model.weights import files
from emo_model.weights.files import load_state_dict_strict, read_state_dict, write_safetensors


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g).half(),
            "steps": torch.arange(5)}


def _same(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_safetensors_roundtrip_keeps_values_dtypes_and_metadata(tmp_path):
    path = tmp_path / "sub" / "w.safetensors"
    tensors = _tensors()
    tensors["t"] = torch.randn(4, 3).t()  # non-contiguous: must be written contiguous
    write_safetensors(tensors, path, metadata={"format": "test/1"})
    assert _same(read_state_dict(path), tensors)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "test/1"}
    assert sorted(os.listdir(path.parent)) == ["w.safetensors"]


def test_written_file_gets_the_mode_of_any_new_file(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    write_safetensors(_tensors(), tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_write_accepts_tensors_sharing_storage(tmp_path):
    shared = torch.randn(4, 4)
    write_safetensors({"emb": shared, "head": shared, "row": shared[0]}, tmp_path / "w.safetensors")
    back = read_state_dict(tmp_path / "w.safetensors")
    assert torch.equal(back["emb"], shared) and torch.equal(back["head"], shared)
    assert torch.equal(back["row"], shared[0])


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(files, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_safetensors(_tensors(), path)
    assert os.listdir(tmp_path) == []

    monkeypatch.undo()
    write_safetensors(_tensors(), path)
    monkeypatch.setattr(files, "save_file", half_write)
    with pytest.raises(OSError):
        write_safetensors({"other": torch.zeros(1)}, path)
    assert os.listdir(tmp_path) == ["w.safetensors"]
    assert _same(read_state_dict(path), _tensors())


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickled_state_dicts_load_and_wrappers_are_unwrapped(tmp_path, suffix):
    plain, wrapped = tmp_path / f"plain{suffix}", tmp_path / f"wrapped{suffix}"
    torch.save(_tensors(), plain)
    # Lightning-style: the weights plus bookkeeping the loader must drop.
    torch.save({"state_dict": _tensors(), "global_step": 840000, "epoch": 3}, wrapped)
    assert _same(read_state_dict(plain), _tensors())
    assert _same(read_state_dict(wrapped), _tensors())
    torch.save({"module": {"state_dict": _tensors()}}, wrapped)
    assert _same(read_state_dict(wrapped), _tensors())


@pytest.mark.parametrize("name", ["full.safetensors", "full.ckpt"])
def test_prefix_selects_one_part_of_a_full_checkpoint(tmp_path, name):
    full = {"model.diffusion_model.x": torch.ones(2), "first_stage_model.y": torch.zeros(3), "z": torch.ones(1)}
    path = tmp_path / name
    write_safetensors(full, path) if name.endswith(".safetensors") else torch.save(full, path)
    assert list(read_state_dict(path, prefix="first_stage_model.")) == ["first_stage_model.y"]
    # A file without the prefix is read whole (a standalone VAE file, say).
    assert sorted(read_state_dict(path, prefix="vae.")) == sorted(full)


def test_missing_file_names_path_and_what_to_do(tmp_path):
    path = tmp_path / "models" / "v1-5-pruned-emaonly.safetensors"
    with pytest.raises(WeightsError) as e:
        read_state_dict(path, what="SD1.5 checkpoint")
    msg = str(e.value)
    assert "SD1.5 checkpoint not found" in msg and str(path) in msg
    assert f"Put v1-5-pruned-emaonly.safetensors in {path.parent}" in msg


@pytest.mark.parametrize("name", ["w.safetensors", "w.ckpt"])
@pytest.mark.parametrize("damage", ["truncated", "junk", "empty"])
def test_corrupt_files_are_reported_with_their_path(tmp_path, name, damage):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        write_safetensors(_tensors(), path)
    else:
        torch.save(_tensors(), path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "junk": b"hello, not weights", "empty": b""}[damage])
    with pytest.raises(WeightsError, match="corrupt, truncated or not a weight file") as e:
        read_state_dict(path)
    assert str(path) in str(e.value)


def test_pickle_with_arbitrary_objects_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.ckpt"
    torch.save({"weight": torch.zeros(2), "payload": Payload()}, path)
    with pytest.raises(WeightsError, match="refusing to unpickle") as e:
        read_state_dict(path)
    assert str(path) in str(e.value) and "safetensors" in str(e.value)
    assert not marker.exists()


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    torch.save({"lr": 0.1, "weight": torch.zeros(1)}, tmp_path / "mixed.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(WeightsError, match="holds a list"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="non-tensor entries"):
        read_state_dict(tmp_path / "mixed.pt")
    with pytest.raises(WeightsError, match="unsupported extension"):
        read_state_dict(tmp_path / "w.onnx")
    with pytest.raises(WeightsError, match="is a folder"):
        read_state_dict(tmp_path)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.head = torch.nn.Linear(3, 2)
        self.register_buffer("scale", torch.ones(2))


def _net_state(**changes):
    state = {k: torch.full_like(v, 0.5) for k, v in _Net().state_dict().items()}
    state.update(changes)
    return state


def test_strict_loader_loads_and_keeps_module_dtype():
    net = _Net()
    state = {k: v.half() for k, v in _net_state().items()}
    assert load_state_dict_strict(net, state, source="x.safetensors", what="test net") == ([], [])
    assert all(v.dtype == torch.float32 and torch.all(v == 0.5) for v in net.state_dict().values())


def test_strict_loader_reports_missing_unexpected_and_shapes():
    state = _net_state(**{"proj.weight": torch.zeros(3, 5), "extra.weight": torch.zeros(1)})
    del state["head.bias"]
    with pytest.raises(WeightsError) as e:
        load_state_dict_strict(_Net(), state, source="/m/file.safetensors", what="test net")
    msg = str(e.value)
    assert "test net" in msg and "/m/file.safetensors" in msg
    assert "1 key missing: head.bias" in msg
    assert "1 key unexpected: extra.weight" in msg
    assert "proj.weight: file (3, 5) vs model (3, 4)" in msg


def test_strict_loader_lists_at_most_ten_keys():
    state = _net_state(**{f"junk.{i}": torch.zeros(1) for i in range(25)})
    with pytest.raises(WeightsError, match=r"25 keys unexpected: junk\.0, .*junk\.9 \(and 15 more\)") as e:
        load_state_dict_strict(_Net(), state, source="f", what="test net")
    assert "junk.10" not in str(e.value)


def test_strict_loader_ignores_by_prefix_and_predicate():
    net = _Net()
    state = _net_state(**{"extra.a": torch.zeros(1), "ema.b": torch.zeros(1)})
    del state["head.weight"], state["head.bias"], state["scale"]
    ignored = load_state_dict_strict(net, state, source="f", what="test net",
                                     ignore_missing=("head.", lambda k: k == "scale"),
                                     ignore_unexpected=(lambda k: k.startswith(("extra.", "ema.")),))
    assert (sorted(ignored[0]), ignored[1]) == (["head.bias", "head.weight", "scale"], ["extra.a", "ema.b"])
    assert torch.all(net.proj.weight == 0.5) and torch.all(net.scale == 1)


def test_strict_loader_fills_a_meta_module():
    with torch.device("meta"):
        net = _Net().half()
    load_state_dict_strict(net, _net_state(), source="f", what="test net")
    assert all(v.device.type == "cpu" and v.dtype == torch.float16 for v in net.state_dict().values())
    assert isinstance(net.proj.weight, torch.nn.Parameter) and net.proj.weight.requires_grad
    assert torch.all(net.proj.weight == 0.5)


def test_strict_loader_checks_meta_state_against_meta_module():
    """Full-size key/shape checks without memory: meta tensors into a meta module."""
    with torch.device("meta"):
        net = _Net()
        state = _Net().state_dict()
    load_state_dict_strict(net, state, source="meta", what="test net")
    assert all(v.is_meta for v in net.state_dict().values())
    with pytest.raises(WeightsError, match="proj.weight: file"):
        load_state_dict_strict(net, {**state, "proj.weight": torch.empty(1, device="meta")}, source="m", what="net")


def test_atomic_writes_leave_the_old_file_or_the_new_one_never_a_part(tmp_path):
    import pytest
    from emo_model.atomic import atomic_path, write_text_atomic
    target = tmp_path / "index.json"
    write_text_atomic(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.json"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["index.json"]
