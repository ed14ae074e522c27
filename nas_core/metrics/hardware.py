"""Hardware costs of a model on the run's Env: size, compute, latency, throughput, peak memory.

Owns :func:`measure_hardware` (-> :class:`~nas_core.records.HardwareMetrics`),
:func:`measure_latency`, :func:`peak_memory`, :func:`resolve_device` and
:class:`LiveTensorMemory`, the CPU memory meter. Methods:

- Parameters, MACs and size come from :mod:`nas_core.models` (``count_params``;
  ``count_macs``: convolutions and matrix products of one image (what torch.utils.flop_counter counts, FLOPs / 2);
  ``model_size_mb``: fp32 parameters + floating buffers, 10^6 bytes per MB).
- Latency: the model in eval mode under ``torch.inference_mode`` on a random batch
  of ``Env.batch_size`` images (and separately of 1 image), ``Env.warmup`` untimed
  runs, then ``Env.repeats`` runs timed one by one with ``time.perf_counter``
  (``torch.cuda.synchronize`` around each on CUDA), made to survive a busy machine:
  the repeats are split into rounds (:data:`LATENCY_ROUNDS`), the batch and the
  single-image measurements take turns round by round (interleaved, so a burst of load
  from another process hits both alike), and the reported figure is the *minimum over
  rounds of each round's median*: load only ever adds time, so the quietest round is
  the best estimate of the model's own cost, and a median inside a round ignores a
  single stall. The spread ``(max - min) / min`` of the round medians is reported as
  ``latency_spread``; above :data:`NOISY_SPREAD` the figure is logged and shown as
  noisy (re-measure on a quiet machine).
  The same rounds also read the process's CPU clock (``time.process_time``, CPU device
  only), reported as ``latency_cpu_image_s``: CPU seconds of all threads per image. Wall
  time under load shifts ×1.8 and spreads wider when other processes come and go
  (``python -m benchmarks latency``), the CPU figure moved ×1.02: it is the load-robust
  cost to compare candidates by on a shared machine (with one thread it is the latency a
  quiet machine would show; with N threads up to N times it).
  ``torch.set_num_threads(Env.threads)`` applies while timing and the previous thread
  count is restored afterwards. Throughput = batch size / median batch latency.
- Peak memory, CUDA: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``, i.e. the caching allocator's peak of live tensor bytes,
  model weights and input included.
- Peak memory, CPU: :class:`LiveTensorMemory`, a ``TorchDispatchMode`` that adds the
  bytes of every new tensor storage an ATen operator returns and subtracts them when the
  storage is freed (a weak reference to the storage fires then); it starts from the
  model's parameters and buffers and the input batch, so the figure is comparable to the
  CUDA one. It counts tensor storage, not allocator overhead, oneDNN scratch buffers or
  the Python heap; it is exact for what it counts and does not depend on the process's
  RSS (which other threads and earlier allocations blur).
- Training-step memory: one forward + backward + Adam step on a copy of the model (so
  the caller's weights and batch-norm statistics are untouched) at the training batch
  size, measured the same way; it includes gradients and Adam's two moment buffers. The
  Adam step is written out (torch's CPU single-tensor update, same buffers and
  temporaries) because constructing a ``torch.optim`` optimizer imports ``torch._dynamo``.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nas_core.errors import UserError
from nas_core.models import count_macs, count_params, model_size_mb
from nas_core.records import HardwareMetrics
from nas_core.settings import Env

log = logging.getLogger(__name__)

CPU_MEMORY_METHOD = (
    "cpu: live tensor storage bytes tracked per ATen op (TorchDispatchMode), "
    "weights + input + activations; excludes allocator overhead"
)
CUDA_MEMORY_METHOD = "cuda: torch.cuda.max_memory_allocated (weights + input + activations)"

_MB = 1e6


class DeviceError(UserError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present) -> a torch device.

    Raises:
        DeviceError: ``cuda`` was asked for on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was requested but CUDA is not available here; use cpu or auto")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r} is not supported; use cpu, cuda or auto")
    return torch.device(name)


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LiveTensorMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage while the mode is active (see the module docstring).

    Usage::

        with LiveTensorMemory(already_live=[*model.parameters(), x]) as mem:
            model(x)
        mem.peak_bytes
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._disable_dynamo unless the mode opts out
        # (the opt-out its docstring shows); that wrapper imports torch._dynamo at the first operator,
        # ~3 CPU-s in a fresh process. Nothing runs compiled under this meter.
        return False

    def __init__(self, already_live: Any = ()) -> None:
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        # storage id -> weak reference whose callback releases its bytes; the dict keeps the refs alive.
        self._refs: dict[int, weakref.ref] = {}
        for t in tree_leaves(list(already_live)):
            if isinstance(t, torch.Tensor):
                self._track(t)

    def _release(self, key: int, nbytes: int, _ref: weakref.ref) -> None:
        if self._refs.pop(key, None) is not None:
            self.current_bytes -= nbytes

    def _track(self, t: torch.Tensor) -> None:
        if t.device.type == "meta":
            return
        st = t.untyped_storage()
        key = st._cdata
        if key in self._refs:
            return
        nbytes = int(st.nbytes())
        self._refs[key] = weakref.ref(st, partial(self._release, key, nbytes))
        self.current_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Timed repeats are split into this many rounds (fewer when there are too few repeats).
LATENCY_ROUNDS = 5
#: A spread of round medians above this (50 %) marks a latency as noisy.
NOISY_SPREAD = 0.5


@dataclass(frozen=True)
class LatencyEstimate:
    """A latency from several rounds of timed runs: the quietest round's median and the spread."""

    seconds: float  # min over rounds of the round's median
    spread: float  # (max - min) / min of the round medians; 0 = every round agreed
    round_medians: tuple[float, ...]
    cpu_seconds: float | None = None  # min over rounds of the median process CPU time per call

    @property
    def noisy(self) -> bool:
        """True when the rounds disagree by more than :data:`NOISY_SPREAD` (the machine was busy)."""
        return self.spread > NOISY_SPREAD


def estimate_latency(round_medians: Sequence[float],
                     cpu_round_medians: Sequence[float] | None = None) -> LatencyEstimate:
    """Min of the round medians, with their relative spread (and the min of the CPU-time medians).

    Raises:
        ValueError: no round.
    """
    if not round_medians:
        raise ValueError("no timed round to estimate a latency from")
    lo, hi = min(round_medians), max(round_medians)
    return LatencyEstimate(seconds=float(lo), spread=float((hi - lo) / lo) if lo > 0 else 0.0,
                           round_medians=tuple(float(m) for m in round_medians),
                           cpu_seconds=float(min(cpu_round_medians)) if cpu_round_medians else None)


def interleaved_latencies(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    rounds: int = LATENCY_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
    cpu_clock: Callable[[], float] | None = None,
) -> dict[str, LatencyEstimate]:
    """Time every function in ``fns`` in turns: round 1 of each, round 2 of each, ...

    Args:
        fns: name -> a call to time (already warmed up).
        repeats: timed calls of each function in all (split evenly over the rounds, at least one per round).
        rounds: rounds to split them into (at most ``repeats``).
        clock: seconds, monotonic (injectable so the estimator is testable without a real model).
        sync: waits for queued device work (CUDA) before the clock is read.
        cpu_clock: CPU seconds (``time.process_time``), read around the same calls; None skips it.
    """
    repeats = max(1, int(repeats))
    rounds = max(1, min(int(rounds), repeats))
    per_round = max(1, repeats // rounds)
    medians: dict[str, list[float]] = {name: [] for name in fns}
    cpu_medians: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times, cpu_times = [], []
            for _ in range(per_round):
                c0 = cpu_clock() if cpu_clock is not None else 0.0
                t0 = clock()
                fn()
                sync()
                times.append(clock() - t0)
                if cpu_clock is not None:
                    cpu_times.append(cpu_clock() - c0)
            medians[name].append(statistics.median(times))
            if cpu_times:
                cpu_medians[name].append(statistics.median(cpu_times))
    return {name: estimate_latency(m, cpu_medians[name] or None) for name, m in medians.items()}


def _latency_fns(model: nn.Module, input_shape: tuple[int, int, int], batch_sizes: Sequence[int],
                 warmup: int, device: torch.device, channels_last: bool, seed: int) -> dict[str, Callable[[], Any]]:
    fns: dict[str, Callable[[], Any]] = {}
    for b in dict.fromkeys(batch_sizes):
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand((b, *input_shape), generator=gen).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fns[str(b)] = partial(model, x)
        for _ in range(max(0, warmup)):
            model(x)
    _sync(device)
    return fns


def measure_latencies(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    device: torch.device,
    channels_last: bool = False,
    seed: int = 0,
) -> dict[int, LatencyEstimate]:
    """Interleaved latency of one forward pass at each batch size (see the module docstring)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            fns = _latency_fns(model, input_shape, batch_sizes, warmup, device, channels_last, seed)
            est = interleaved_latencies(fns, repeats, sync=partial(_sync, device),
                                        cpu_clock=time.process_time if device.type == "cpu" else None)
    finally:
        model.train(was_training)
    return {int(k): v for k, v in est.items()}


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    channels_last: bool = False,
    seed: int = 0,
) -> float:
    """Seconds of one inference forward pass over ``batch_size`` random images (min of round medians).

    The model must already be on ``device``; its train/eval mode is restored afterwards.
    """
    return measure_latencies(model, input_shape, [batch_size], warmup, repeats, device, channels_last,
                             seed)[batch_size].seconds


def _measure_peak(fn: Callable[[], Any], device: torch.device, already_live: Any) -> float:
    """Peak MB while ``fn`` runs: CUDA allocator peak, or LiveTensorMemory on the CPU."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / _MB
    with LiveTensorMemory(already_live) as mem:
        fn()
    return mem.peak_bytes / _MB


def _adam_first_step(params: Sequence[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                     eps: float = 1e-8) -> None:
    """The first step of ``torch.optim.Adam`` on the CPU (its single-tensor path), written out.

    Same state (two moment buffers per parameter, allocated at the first step) and the same
    per-parameter temporaries, so the measured peak is the optimizer's; but constructing a
    ``torch.optim`` optimizer imports ``torch._dynamo`` (~3 CPU-s in a fresh process), which a
    measurement that is otherwise a few forward passes need not pay.
    """
    b1, b2 = betas
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            g = p.grad
            exp_avg = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avg_sq = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avg.lerp_(g, 1 - b1)
            exp_avg_sq.mul_(b2).addcmul_(g, g.conj(), value=1 - b2)
            denom = (exp_avg_sq.sqrt() / (1 - b2) ** 0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - b1))


def peak_memory(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    device: torch.device,
    train_step: bool = False,
    channels_last: bool = False,
    seed: int = 0,
) -> float:
    """Peak memory in MB of one inference pass, or of one training step when ``train_step``.

    A training step runs on a deep copy of the model with random labels and the first step of
    Adam (:func:`_adam_first_step`), so the caller's model is unchanged.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, *input_shape), generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if not train_step:
        was_training = model.training
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x)

        try:
            return _measure_peak(infer, device, [*model.parameters(), *model.buffers(), x])
        finally:
            model.train(was_training)

    net = copy.deepcopy(model).train()
    with torch.no_grad():
        n_out = int(net(x[:2] if batch_size >= 2 else x).shape[1])
    y = torch.randint(0, n_out, (batch_size,), generator=gen).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        for p in params:
            p.grad = None
        loss = loss_fn(net(x), y)
        loss.backward()
        _adam_first_step(params)

    return _measure_peak(step, device, [*net.parameters(), *net.buffers(), x, y])


def measure_hardware(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    env: Env,
    train_batch_size: int | None = None,
    channels_last: bool = False,
    seed: int = 0,
) -> HardwareMetrics:
    """Every hardware metric of ``model`` on ``env`` (methods in the module docstring).

    Args:
        model: the network; it is moved to the Env's device (in place) and its mode restored.
        input_shape: (channels, height, width) of one image.
        env: device, threads, inference batch size, warm-up and repeats.
        train_batch_size: batch size of the measured training step (default: the Env's batch
            size, at least 2 because batch norm needs two samples in training mode); 0 skips it.
        channels_last: run inference in the channels-last memory format.
        seed: seeds the random inputs.

    Raises:
        DeviceError: the Env asks for CUDA on a machine without it.
    """
    shape = tuple(int(s) for s in input_shape)
    device = resolve_device(env.device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = count_params(model)
    macs = count_macs(model, shape)
    size = model_size_mb(model)
    tb = max(2, env.batch_size) if train_batch_size is None else int(train_batch_size)
    with num_threads(env.threads):
        lats = measure_latencies(model, shape, [env.batch_size, 1], env.warmup, env.repeats, device,
                                 channels_last, seed)
        lat_batch, lat_b1 = lats[env.batch_size].seconds, lats[1].seconds
        cpu_batch = lats[env.batch_size].cpu_seconds
        noisiest = max(lats, key=lambda b: lats[b].spread)  # the batch size whose rounds disagree most
        spread = lats[noisiest].spread
        if spread > NOISY_SPREAD:
            log.warning("latency is noisy: round medians at batch %d differ by %.0f%% (%s); the machine is "
                        "busy, re-measure on a quiet one", noisiest, 100 * spread,
                        ", ".join(f"{m * 1e3:.3g} ms" for m in lats[noisiest].round_medians))
        mem = peak_memory(model, shape, env.batch_size, device, False, channels_last, seed)
        train_mem = peak_memory(model, shape, tb, device, True, channels_last, seed) if tb >= 2 else None
    return HardwareMetrics(
        params=params,
        macs=macs,
        size_mb=size,
        latency_batch_s=lat_batch,
        latency_image_s=lat_batch / env.batch_size,
        latency_b1_s=lat_b1,
        throughput=env.batch_size / lat_batch if lat_batch > 0 else None,
        peak_memory_mb=mem,
        peak_train_memory_mb=train_mem,
        memory_method=CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD,
        device=device.type,
        threads=int(env.threads),
        batch_size=int(env.batch_size),
        latency_spread=spread,
        latency_cpu_image_s=None if cpu_batch is None else cpu_batch / env.batch_size,
    )


def static_costs(model: nn.Module, input_shape: tuple[int, int, int], env: Env) -> HardwareMetrics:
    """Parameters, MACs and size only: no timing, no memory (for fast estimates)."""
    shape = tuple(int(s) for s in input_shape)
    return HardwareMetrics(
        params=count_params(model),
        macs=count_macs(model, shape),
        size_mb=model_size_mb(model),
        device=env.device,
        threads=int(env.threads),
        batch_size=int(env.batch_size),
    )
