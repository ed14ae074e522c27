"""Export trained networks: weights, ONNX, TorchScript and standalone PyTorch source.

Owns every file format a model leaves the engine in:

- :func:`save_state` / :func:`load_state`: the ``state_dict`` with
  ``torch.save``; loading uses ``weights_only=True`` so a weights file can
  never run code.
- :func:`export_onnx`: one self-contained ONNX file (no external data), input
  ``input`` ``(batch, C, H, W)`` with a dynamic batch, output ``logits``, opset
  17. It uses torch's TorchScript-based exporter (``dynamo=False``): the
  networks here are plain feed-forward graphs that a trace captures exactly,
  and it takes a fraction of a second, where the ``torch.export``-based one
  (``dynamo=True``, torch's default since 2.9) spent 6-17 s of mostly Python
  work per export on the default CNN on an idle 2-core machine (torch.export
  tracing with fake tensors, decompositions, building the torchlib registry
  on the first call of a process, the onnxscript optimizer) and minutes on a
  busy one (228 s on the Export page in issue 17). ``exporter="dynamo"`` picks
  the new exporter; either falls back to the other if it fails on a model.
  ``python -m benchmarks export`` measures both in one run.
- :func:`export_torchscript`: ``torch.jit.trace`` in eval mode (the networks
  here have no data-dependent control flow, so a trace is exact).
- :func:`generate_source`: a Python module that imports only ``torch`` and
  rebuilds the spec's network (same ``state_dict`` keys and shapes). It embeds
  the text of :mod:`nas_core.models.layers` verbatim, so it is the same code
  that was trained, plus a readable ``build_model()`` that lists every layer.
  The spec is data, and so is the generated text: nothing here executes it.
"""

from __future__ import annotations

import ast
import logging
import pathlib
import pprint
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from nas_core.atomic import atomic_file
from nas_core.models import layers
from nas_core.models.builder import ModelError, layer_plan
from nas_core.space import ArchSpec

logger = logging.getLogger(__name__)


def save_state(model: nn.Module, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``model.state_dict()`` (on CPU) to ``path`` atomically (temp + fsync + rename); returns the path.

    Raises:
        nas_core.atomic.DiskFull: the disk filled up; no truncated weights file is left.
    """
    path = pathlib.Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(path, "model weights") as fh:
        torch.save(state, fh)
    return path


def load_state(model: nn.Module, path: str | pathlib.Path) -> nn.Module:
    """Load weights saved by :func:`save_state` into ``model`` (safely: ``weights_only=True``).

    Returns:
        ``model``, with the weights loaded.

    Raises:
        ModelError: the file is missing, is not a weights file, or does not fit
            the model (the message names missing/unexpected keys or shapes).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {str(path)!r} does not exist; export the candidate's weights first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or unsafe file
        raise ModelError(
            f"{str(path)!r} is not a weights file this app can load safely ({type(exc).__name__}: "
            f"{str(exc)[:200]}); save it with save_state (a plain state_dict)"
        ) from exc
    if not isinstance(state, dict):
        raise ModelError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(
            f"the weights in {str(path)!r} do not fit this network ({str(exc)[:500]}); "
            "build the model from the same spec, input size and class count they were trained with"
        ) from exc
    return model


def _example(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 2) -> torch.Tensor:
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    # Batch 2, not 1: torch.export specializes a dimension of size 1 and would fix the batch.
    return torch.randn((batch, *tuple(int(s) for s in input_shape)), device=device)


ONNX_EXPORTERS = ("torchscript", "dynamo")


def _onnx_torchscript(model: nn.Module, x: torch.Tensor, path: pathlib.Path, opset: int | None) -> None:
    # The legacy exporter warns that it is deprecated (DeprecationWarning) and that tracing turned shape
    # checks into constants (TracerWarning): the resolution is fixed here, so the trace is exact.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
            opset_version=opset or 17, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def _onnx_dynamo(model: nn.Module, x: torch.Tensor, path: pathlib.Path, opset: int | None) -> None:
    torch.onnx.export(
        model, (x,), str(path), dynamo=True, external_data=False, verbose=False,
        input_names=["input"], output_names=["logits"], opset_version=opset,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: str | pathlib.Path,
                opset: int | None = None, exporter: str = "torchscript") -> pathlib.Path:
    """Write ``model`` (in eval mode) as one ONNX file with a dynamic batch.

    Args:
        model: the network; it is put in eval mode and left there.
        input_shape: ``(channels, height, width)`` of one image.
        path: where to write the ``.onnx`` file.
        opset: ONNX opset; ``None`` is 17 for the TorchScript-based exporter and torch's default for
            the ``torch.export``-based one.
        exporter: ``"torchscript"`` (default, a fraction of a second) or ``"dynamo"`` (torch's
            ``torch.export``-based exporter, seconds to minutes); the other one is tried if it fails.

    Returns:
        The path written.
    """
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; use one of {', '.join(ONNX_EXPORTERS)}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = _example(model, input_shape)
    first, second = (_onnx_torchscript, _onnx_dynamo) if exporter == "torchscript" else (
        _onnx_dynamo, _onnx_torchscript)
    try:
        first(model, x, path, opset)
    except Exception as exc:  # an exporter that fails on a graph: the other one is the fallback
        logger.warning("%s ONNX export failed (%s); trying the other exporter", exporter, exc)
        second(model, x, path, opset)
    return path


def export_torchscript(model: nn.Module, input_shape: tuple[int, int, int],
                       path: str | pathlib.Path) -> pathlib.Path:
    """Trace ``model`` in eval mode and save it for ``torch.jit.load``; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # TorchScript is deprecated upstream (FutureWarning) but still what many deployment tools load.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # Shape checks inside norms become constants; exact here because the resolution is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (_example(model, input_shape),))
        traced.save(str(path))
    return path


def _layers_body() -> str:
    """The text of :mod:`nas_core.models.layers` without its module docstring."""
    text = pathlib.Path(layers.__file__).read_text()
    tree = ast.parse(text)
    first = tree.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        text = "\n".join(text.splitlines()[first.end_lineno:])
    return text.strip("\n") + "\n"


def _call(name: str, kwargs: dict, indent: str) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{indent}{name}({args})"


@dataclass(frozen=True)
class Preprocessing:
    """How an image must be prepared for the exported network, and what its outputs mean.

    The app's pipeline (nas_core.data.cache and nas_core.evaluator.InputTransform): RGB, centre-crop to
    a square on the shorter side, bilinear resize to ``image_size``, scale to [0, 1], subtract ``mean``
    and divide by ``std`` per channel (the training split's statistics). Output ``i`` is the logit of
    ``class_names[i]``.
    """

    image_size: int
    mean: tuple[float, ...] | None  # per channel on the [0, 1] scale; None when not known
    std: tuple[float, ...] | None
    class_names: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The steps and the class map as plain sentences (model card, README of an export)."""
        out = [
            "Convert the image to RGB.",
            "Centre-crop it to a square (the shorter side), then resize to "
            f"{self.image_size} x {self.image_size} pixels (bilinear, antialiased).",
            "Scale pixel values to [0, 1] (divide by 255), channels first (3, H, W).",
        ]
        if self.mean is not None and self.std is not None:
            out.append("Normalise each channel: (x - mean) / std with mean "
                       f"{_floats(self.mean)} and std {_floats(self.std)} (R, G, B; the training split's statistics).")
        else:
            out.append("Normalise each channel with the training split's mean and std (not recorded for this model).")
        if self.class_names:
            out.append("Output index -> class: " + ", ".join(f"{i} = {n}" for i, n in enumerate(self.class_names)) + ".")
        return out


def _floats(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def generate_source(spec: ArchSpec, input_shape: tuple[int, int, int], n_classes: int,
                    preprocessing: Preprocessing | None = None) -> str:
    """A standalone Python module (imports only torch) whose ``build_model()`` rebuilds ``spec``'s network.

    The returned network has the same ``state_dict`` keys and shapes as
    ``nas_core.models.build_model(spec, input_shape, n_classes)``, so the
    weights from :func:`save_state` load into it.

    Raises:
        ModelError: for an impossible input shape or class count.
    """
    stem, blocks, head = layer_plan(spec, input_shape, n_classes)
    shape = tuple(int(s) for s in input_shape)
    spec_text = pprint.pformat(spec.to_dict(), width=100, sort_dicts=False)
    block_lines = ",\n".join(_call(name, kw, " " * 12) for name, kw in blocks)
    header = (
        f'"""A CNN found by EquiNAS Studio (spec key {spec.key}), as plain PyTorch.\n\n'
        "Generated from the architecture spec below; it imports only torch.\n"
        f"Input: a float tensor (batch, {shape[0]}, {shape[1]}, {shape[2]}); output: (batch, {int(n_classes)}) logits.\n"
        "Load the exported weights with:\n\n"
        "    model = build_model()\n"
        '    model.load_state_dict(torch.load("weights.pt", weights_only=True))\n'
        + ("\nInput preprocessing (the same as in training; ``preprocess`` below does steps 3-4):\n\n"
           + "".join(f"{i}. {line}\n" for i, line in enumerate(preprocessing.lines(), start=1))
           if preprocessing is not None else "")
        + '"""\n\n'
    )
    footer = (
        f"\n\nINPUT_SHAPE = {shape!r}\n"
        f"N_CLASSES = {int(n_classes)!r}\n"
        f"SPEC = {spec_text}\n"
        + (_preprocess_source(preprocessing) if preprocessing is not None else "")
        + "\n\n"
        "def build_model() -> SpecNet:\n"
        '    """The network of ``SPEC``, freshly initialised."""\n'
        "    return SpecNet(\n"
        f"{_call('Stem', stem, ' ' * 8)},\n"
        "        [\n"
        f"{block_lines}{',' if blocks else ''}\n"
        "        ],\n"
        f"{_call('Head', head, ' ' * 8)},\n"
        "    )\n"
    )
    return header + _layers_body() + footer


def _preprocess_source(p: Preprocessing) -> str:
    """Constants and a ``preprocess`` function for the generated module (torch only)."""
    mean = repr(tuple(round(v, 6) for v in p.mean)) if p.mean is not None else "None"
    std = repr(tuple(round(v, 6) for v in p.std)) if p.std is not None else "None"
    return (
        f"IMAGE_SIZE = {int(p.image_size)!r}\n"
        f"MEAN = {mean}  # per channel (R, G, B) on the [0, 1] scale: the training split's statistics\n"
        f"STD = {std}\n"
        f"CLASS_NAMES = {tuple(p.class_names)!r}  # output index -> class\n\n\n"
        "def preprocess(images: torch.Tensor) -> torch.Tensor:\n"
        '    """uint8 (batch, 3, IMAGE_SIZE, IMAGE_SIZE) RGB images, already centre-cropped and resized -> model input."""\n'
        "    x = images.float() / 255.0\n"
        "    if MEAN is not None:\n"
        "        x = (x - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)\n"
        "    return x\n"
    )
