"""Hardware metrics: exact memory accounting on hand-sized models, latency fields, settings restored."""

import copy

import pytest
import torch
from torch import nn

from nas_core.errors import UserError
from nas_core.metrics.hardware import (
    CPU_MEMORY_METHOD,
    LiveTensorMemory,
    measure_hardware,
    peak_memory,
    resolve_device,
)
from nas_core.settings import Env

CPU = torch.device("cpu")
F32 = 4  # bytes


def test_live_tensor_memory_counts_live_storages_exactly():
    m = nn.Linear(100, 50)
    x = torch.rand(8, 100)
    with torch.inference_mode(), LiveTensorMemory([*m.parameters(), x]) as mem:
        y = m(x)  # 8x50
        z = y.relu()  # 8x50, y still alive
        del y
        w = z * 2  # y freed first: the peak does not grow
    params = 100 * 50 + 50
    assert mem.peak_bytes == F32 * (params + 8 * 100 + 8 * 50 * 2)
    assert mem.current_bytes == F32 * (params + 8 * 100 + 8 * 50 * 2)
    del w, z
    assert mem.current_bytes == F32 * (params + 8 * 100)


def test_inference_peak_of_a_two_layer_net_is_weights_input_and_two_activations():
    net = nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Linear(300, 10))
    params = 200 * 300 + 300 + 300 * 10 + 10
    for batch in (4, 16):
        mb = peak_memory(net, (200,), batch, CPU)
        # input + first linear output + relu output alive together, then the first is freed.
        assert mb * 1e6 == pytest.approx(F32 * (params + batch * 200 + 2 * batch * 300))


def test_training_step_memory_includes_gradients_and_adam_state_and_leaves_model_alone():
    net = nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Linear(300, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params_bytes = F32 * sum(p.numel() for p in net.parameters())
    train = peak_memory(net, (200,), 8, CPU, train_step=True)
    infer = peak_memory(net, (200,), 8, CPU)
    # weights + gradients + Adam's two moments at least.
    assert train * 1e6 >= 4 * params_bytes
    assert train > infer
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.training


def test_measure_hardware_fills_every_field_and_restores_threads_and_mode():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    net.train()
    torch.set_num_threads(1)
    env = Env(device="cpu", threads=2, batch_size=3, warmup=1, repeats=3)
    hw = measure_hardware(net, (3, 16, 16), env)
    assert torch.get_num_threads() == 1
    assert net.training
    assert hw.params == 3 * 8 * 9 + 8 + 8 + 8 + 8 * 4 + 4
    # conv 16*16*8*27 MACs + linear 8*4
    assert hw.macs == 16 * 16 * 8 * 27 + 8 * 4
    assert hw.size_mb == pytest.approx(F32 * (hw.params + 8 + 8) / 1e6)  # + BN running mean/var
    assert hw.latency_batch_s > 0 and hw.latency_b1_s > 0
    assert hw.latency_image_s == pytest.approx(hw.latency_batch_s / 3)
    assert 0 < hw.latency_cpu_image_s < 10 * hw.latency_image_s * env.threads  # CPU seconds of all threads
    assert hw.throughput == pytest.approx(3 / hw.latency_batch_s)
    assert hw.peak_memory_mb > F32 * hw.params / 1e6
    assert hw.peak_train_memory_mb > hw.peak_memory_mb
    assert (hw.device, hw.threads, hw.batch_size, hw.memory_method) == ("cpu", 2, 3, CPU_MEMORY_METHOD)


def test_devices():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


def test_written_out_adam_step_is_torchs_first_step_and_costs_its_memory():
    """peak_memory's training step writes Adam out (torch.optim imports torch._dynamo); held to torch's."""
    from nas_core.metrics.hardware import _adam_first_step

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    theirs = copy.deepcopy(ours)
    x, y = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    opt = torch.optim.Adam(theirs.parameters(), lr=1e-3, foreach=False)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(theirs(x), y).backward()
        opt.step()

    def our_step():
        nn.functional.cross_entropy(ours(x), y).backward()
        _adam_first_step(list(ours.parameters()))

    with LiveTensorMemory([*theirs.parameters(), *theirs.buffers(), x, y]) as torch_mem:
        torch_step()
    with LiveTensorMemory([*ours.parameters(), *ours.buffers(), x, y]) as our_mem:
        our_step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7), (a - b).abs().max()
    assert our_mem.peak_bytes == torch_mem.peak_bytes > 0


def test_measuring_hardware_does_not_import_torch_dynamo():
    """Importing torch._dynamo costs ~3 CPU-s in a fresh process: a `supernet measure` pays it for nothing."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from nas_core.metrics.hardware import measure_hardware\n"
        "from nas_core.settings import Env\n"
        "net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))\n"
        "measure_hardware(net, (3, 8, 8), Env(device='cpu', threads=1, batch_size=2, warmup=1, repeats=2),"
        " train_batch_size=4)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
