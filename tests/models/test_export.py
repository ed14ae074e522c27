"""Exported files (weights, ONNX, TorchScript, generated source) reproduce the original network."""

import ast
import importlib.util
import pickle
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from nas_core.errors import UserError
from nas_core.models import build_model
from nas_core.models.baselines import build_baseline
from nas_core.models.export import (
    export_onnx,
    export_torchscript,
    generate_source,
    load_state,
    save_state,
)
from nas_core.space import ArchSpec

SHAPE = (3, 32, 32)
N_CLASSES = 5

# Together: all four block types, SE on three of them, every norm, both pools, hidden and plain heads,
# identity and projection shortcuts, mbconv with and without expansion, every activation.
SPECS = {
    "mixed": ArchSpec.from_dict({
        "stem": {"out_channels": 16, "kernel": 5},
        "blocks": [
            {"type": "conv", "out_channels": 16, "norm": "batch", "se": True, "pool": "max", "act": "relu6"},
            {"type": "residual", "out_channels": 24, "stride": 2, "norm": "group", "pool": "avg"},
            {"type": "mbconv", "out_channels": 24, "expand": 3, "norm": "layer", "se": True, "act": "silu"},
            {"type": "dwsep", "out_channels": 32, "kernel": 5, "norm": "instance", "se": True, "act": "gelu"},
        ],
        "head": {"hidden": 32, "dropout": 0.2},
    }),
    "plain": ArchSpec.from_dict({
        "stem": {"out_channels": 24, "stride": 2},
        "blocks": [
            {"type": "mbconv", "out_channels": 24, "expand": 1, "norm": "none", "act": "hardswish"},
            {"type": "residual", "out_channels": 24, "kernel": 7, "norm": "none", "dropout": 0.3},
            {"type": "conv", "out_channels": 48, "stride": 2, "norm": "batch", "pool": "max"},
        ],
        "head": {"hidden": 0},
    }),
}


def _as_trained(model: nn.Module) -> nn.Module:
    """Give every weight and statistic a non-trivial value, so parity checks mean something."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # norm scales
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 10
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _as_trained(build_model(SPECS[name], SHAPE, N_CLASSES))


def _reference(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = model(x).numpy()
    assert out.std() > 0.01  # the comparison below would be vacuous on near-constant logits
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_source_imports_only_torch_and_rebuilds_the_network(name, tmp_path):
    model = _model(name)
    source = generate_source(SPECS[name], SHAPE, N_CLASSES)
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"__future__", "torch"}
    path = tmp_path / f"generated_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        rebuilt = module.build_model()
    finally:
        del sys.modules[spec.name]
    assert module.SPEC == SPECS[name].to_dict() and module.INPUT_SHAPE == SHAPE
    ours, theirs = model.state_dict(), rebuilt.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    rebuilt.load_state_dict(ours)
    rebuilt.eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(x).numpy(), _reference(model, x), atol=1e-4)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_torchscript_matches(name, tmp_path):
    model = _model(name)
    path = export_torchscript(model, SHAPE, tmp_path / "model.pt")
    loaded = torch.jit.load(str(path))
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), _reference(model, x), atol=1e-4)


def _onnx_outputs(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(["logits"], {"input": x.numpy()})[0]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_onnx_matches_with_any_batch_size(name, tmp_path):
    model = _model(name)
    path = export_onnx(model, SHAPE, tmp_path / "model.onnx")
    assert not list(tmp_path.glob("*.data"))  # one self-contained file
    for batch in (1, 3):
        x = torch.randn(batch, *SHAPE)
        np.testing.assert_allclose(_onnx_outputs(path, x), _reference(model, x), atol=1e-4)


def test_a_baseline_exports_to_onnx_and_torchscript(tmp_path):
    torch.manual_seed(0)
    model = _as_trained(build_baseline("mobilenet_v1", SHAPE, N_CLASSES))
    x = torch.randn(2, *SHAPE)
    expected = _reference(model, x)
    onnx_path = export_onnx(model, SHAPE, tmp_path / "mnv1.onnx")
    np.testing.assert_allclose(_onnx_outputs(onnx_path, x), expected, atol=1e-4)
    ts = torch.jit.load(str(export_torchscript(model, SHAPE, tmp_path / "mnv1.pt")))
    with torch.no_grad():
        np.testing.assert_allclose(ts(x).numpy(), expected, atol=1e-4)


def test_weights_round_trip_and_bad_files_are_user_errors(tmp_path):
    model = _model("mixed")
    path = save_state(model, tmp_path / "sub" / "weights.pt")
    fresh = build_model(SPECS["mixed"], SHAPE, N_CLASSES).eval()
    x = torch.randn(2, *SHAPE)
    assert load_state(fresh, path) is fresh
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(x).numpy(), _reference(model, x))

    other = build_model(SPECS["plain"], SHAPE, N_CLASSES)
    with pytest.raises(UserError, match="do not fit this network"):
        load_state(other, path)
    with pytest.raises(UserError, match="does not exist"):
        load_state(fresh, tmp_path / "missing.pt")
    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(pickle.dumps(ArchSpec()))  # arbitrary objects must not be unpickled
    with pytest.raises(UserError, match="cannot load safely|can load safely"):
        load_state(fresh, unsafe)


def test_the_torch_export_based_exporter_still_matches(tmp_path):
    # The default is the TorchScript-based exporter (a fraction of a second); the torch.export-based one
    # (seconds) stays selectable and is the fallback, so it must give the same outputs.
    model = _model("plain")
    path = export_onnx(model, SHAPE, tmp_path / "model.onnx", exporter="dynamo")
    x = torch.randn(3, *SHAPE)
    np.testing.assert_allclose(_onnx_outputs(path, x), _reference(model, x), atol=1e-4)


def test_a_failing_exporter_falls_back_to_the_other(tmp_path, monkeypatch):
    from nas_core.models import export as ex

    def broken(*args, **kwargs):
        raise RuntimeError("this exporter cannot handle the graph")

    monkeypatch.setattr(ex, "_onnx_torchscript", broken)
    model = _model("plain")
    path = export_onnx(model, SHAPE, tmp_path / "model.onnx")
    x = torch.randn(2, *SHAPE)
    np.testing.assert_allclose(_onnx_outputs(path, x), _reference(model, x), atol=1e-4)
    with pytest.raises(ValueError, match="unknown ONNX exporter"):
        export_onnx(model, SHAPE, tmp_path / "other.onnx", exporter="tf")
