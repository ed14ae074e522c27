"""The super-network's space and slicing: sub-networks equal their standalone networks."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from nas_core.models import build_model, count_macs, count_params
from nas_core.space import validate
from nas_core.supernet.network import (
    DynamicDepthwiseConv2d,
    SuperNet,
    extract_subnet,
    sort_channels,
)
from nas_core.supernet.space import (
    SubnetConfig,
    SubnetError,
    SupernetSpace,
    SupernetSpaceConfig,
    check_config,
    choices_for_supernet,
    count_subnet_macs,
    count_subnet_params,
    largest,
    sample_config,
    smallest,
    spec_to_config,
    to_arch_spec,
    validate_subnet_spec,
)

TINY = SupernetSpaceConfig.tiny()


def _randomize(net: SuperNet, seed: int = 0) -> SuperNet:
    """Non-trivial BN statistics/affine and kernel transforms, so equality means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            if isinstance(m, DynamicDepthwiseConv2d) and m.transform:
                for p in m.transforms.values():
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
    return net.eval()


def _configs(space, n=6, seed=0):
    rng = random.Random(seed)
    return [largest(space), smallest(space)] + [sample_config(space, rng) for _ in range(n)]


@pytest.mark.parametrize("transform", [False, True])
def test_sliced_subnetwork_equals_standalone_model(transform):
    space = dataclasses.replace(TINY, kernel_transform=transform)
    torch.manual_seed(0)
    net = _randomize(SuperNet(space, n_classes=4, image_size=32))
    x = torch.randn(3, 3, 32, 32)
    outputs = []
    for cfg in _configs(space):
        model = extract_subnet(net, cfg).eval()
        # A genuinely standalone builder network, same class and keys as any candidate.
        fresh = build_model(to_arch_spec(cfg, space), (3, 32, 32), 4)
        assert type(model) is type(fresh)
        assert {k: v.shape for k, v in model.state_dict().items()} == {
            k: v.shape for k, v in fresh.state_dict().items()
        }
        with torch.no_grad():
            inside, alone = net(x, cfg), model(x)
        torch.testing.assert_close(alone, inside, atol=1e-5, rtol=0)
        outputs.append(inside)
    # Different sub-networks compute different functions (the check above is not vacuous).
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)


def test_default_space_slicing_at_64px():
    space = SupernetSpaceConfig()
    torch.manual_seed(1)
    net = _randomize(SuperNet(space, n_classes=8, image_size=64), seed=1)
    x = torch.randn(2, 3, 64, 64)
    for cfg in _configs(space, n=2, seed=3):
        model = extract_subnet(net, cfg).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, cfg), atol=1e-5, rtol=0)


def test_kernel_is_centre_crop_of_the_largest():
    dw = DynamicDepthwiseConv2d(6, (3, 5, 7), stride=1)
    w7 = dw.weight.detach()
    assert torch.equal(dw.kernel(7), w7)
    assert torch.equal(dw.kernel(5), w7[:, :, 1:6, 1:6])
    assert torch.equal(dw.kernel(3), w7[:, :, 2:5, 2:5])
    assert torch.equal(dw.kernel(3, channels=4), w7[:4, :, 2:5, 2:5])
    # With the transformation matrices (identity at start) the crop is the same ...
    dwt = DynamicDepthwiseConv2d(6, (3, 5, 7), stride=1, transform=True)
    assert torch.equal(dwt.kernel(3), dwt.weight.detach()[:, :, 2:5, 2:5])
    # ... and a changed 7->5 matrix changes both smaller kernels, not the 7x7.
    with torch.no_grad():
        dwt.transforms["7to5"].mul_(2.0)
    assert torch.allclose(dwt.kernel(5), 2 * dwt.weight.detach()[:, :, 1:6, 1:6])
    assert torch.allclose(dwt.kernel(3), 2 * dwt.weight.detach()[:, :, 2:5, 2:5])
    assert torch.equal(dwt.kernel(7), dwt.weight.detach())


def test_extracted_weights_are_slices_of_the_super_network():
    torch.manual_seed(0)
    net = SuperNet(TINY, n_classes=4, image_size=32)
    cfg = smallest(TINY)
    model = extract_subnet(net, cfg)
    sd = model.state_dict()
    # stage 1's first block sits in super-network slot 2 (stage 0 has 2 slots).
    w = net.blocks[2].expand_conv.weight.detach()
    assert torch.equal(sd["blocks.1.expand_conv.weight"], w[: 8 * 3, :8])
    assert torch.equal(sd["head.fc.weight"], net.head.fc.weight.detach()[:, :12])


def test_params_and_macs_are_exact():
    space = SupernetSpaceConfig()
    for cfg in _configs(space, n=4, seed=5):
        model = build_model(to_arch_spec(cfg, space), (3, 64, 64), 8)
        assert count_subnet_params(cfg, space, 8) == count_params(model)
        assert count_subnet_macs(cfg, space, 8, 64) == count_macs(model, (3, 64, 64))


def test_sort_channels_keeps_the_largest_network_and_orders_importance():
    torch.manual_seed(0)
    net = _randomize(SuperNet(TINY, n_classes=4, image_size=32))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        sort_channels(net)
        after = net(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    imp = net.blocks[0].project_conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


def test_spec_round_trip_and_validation():
    space = SupernetSpaceConfig()
    choices = choices_for_supernet(space)
    for cfg in _configs(space, n=10, seed=2):
        spec = to_arch_spec(cfg, space)
        assert validate_subnet_spec(spec, space) == []
        assert validate(spec, choices, 64) == []
        assert spec_to_config(spec, space) == cfg


def test_validate_subnet_spec_names_what_is_wrong():
    space = SupernetSpaceConfig()
    spec = to_arch_spec(largest(space), space)
    blocks = list(spec.blocks)
    blocks[1] = dataclasses.replace(blocks[1], kernel=9, se=True)
    bad = dataclasses.replace(spec, blocks=tuple(blocks))
    errors = validate_subnet_spec(bad, space)
    assert any("blocks[1].kernel = 9" in e and "[3, 5, 7]" in e for e in errors)
    assert any("blocks[1].se = True" in e for e in errors)
    conv = dataclasses.replace(spec, blocks=(dataclasses.replace(blocks[0], type="conv"),) + spec.blocks[1:])
    assert any("blocks[0].type = 'conv'" in e for e in validate_subnet_spec(conv, space))
    too_few = dataclasses.replace(spec, blocks=spec.blocks[:2])
    assert any("2 block(s)" in e and "4 to 11" in e for e in validate_subnet_spec(too_few, space))
    with pytest.raises(SubnetError, match="blocks\\[1\\].kernel"):
        spec_to_config(bad, space)


def test_config_outside_the_space_is_refused_with_the_allowed_values():
    cfg = largest(TINY)
    bad = dataclasses.replace(cfg, widths=(8, 99), kernels=((7, 4), (7, 7)))
    with pytest.raises(SubnetError) as err:
        check_config(bad, TINY)
    msg = str(err.value)
    assert "widths[1] = 99" in msg and "[12, 16]" in msg
    assert "kernels[0][1] = 4" in msg
    with pytest.raises(SubnetError, match="missing"):
        check_config({"stem_width": 8}, TINY)
    with pytest.raises(SubnetError, match="needs exactly 2"):
        check_config(dataclasses.replace(cfg, expands=((6,), (6, 6))), TINY)


def test_gene_encoding_round_trip_and_inactive_genes():
    sp = SupernetSpace(SupernetSpaceConfig(), n_classes=8, image_size=64)
    lo, hi = sp.bounds
    assert len(lo) == sp.n_var == len(sp.gene_names)
    rng = np.random.default_rng(0)
    for cfg in sp.sample(rng, 20):
        x = sp.encode(cfg)
        assert np.all((lo <= x) & (x <= hi))
        assert sp.decode(x) == cfg
    # Changing a gene of an inactive slot (past the depth) is the same sub-network.
    cfg = smallest(sp.space)
    x = sp.encode(cfg)
    slot = sp.gene_names.index("kernel1.2")
    y = x.copy()
    y[slot] = 2
    assert sp.key(sp.decode(y)) == sp.key(cfg)
    z = x.copy()
    z[sp.gene_names.index("kernel1.0")] = 2
    assert sp.key(sp.decode(z)) != sp.key(cfg)
    objs = sp.exact_objectives([cfg, largest(sp.space)])
    assert objs["params"][0] < objs["params"][1] and objs["macs"][0] < objs["macs"][1]


def test_vectorized_costs_equal_the_per_config_counts_on_raw_gene_rows():
    sp = SupernetSpace(SupernetSpaceConfig(), n_classes=7, image_size=64)
    X = np.random.default_rng(1).integers(0, sp.upper + 1, size=(40, sp.n_var))  # not canonical
    got = sp.exact_array(X)
    configs = [sp.decode(x) for x in X]
    assert list(got["params"]) == [count_subnet_params(c, sp.space, 7) for c in configs]
    assert list(got["macs"]) == [count_subnet_macs(c, sp.space, 7, 64) for c in configs]
    # canonical rows of the same config are identical, so ids dedup exactly like keys
    ids = sp.ids(X)
    keys = [sp.key(c) for c in configs]
    assert len(set(ids)) == len(set(keys))


def test_space_config_round_trip_and_bad_space():
    space = SupernetSpaceConfig()
    assert SupernetSpaceConfig.from_dict(space.to_dict()) == space
    assert SupernetSpaceConfig.from_dict(space.to_dict()).key == space.key
    with pytest.raises(SubnetError, match="unknown field"):
        SupernetSpaceConfig.from_dict({"colour": 1})
    with pytest.raises(SubnetError, match="ascending"):
        dataclasses.replace(space, expands=(6, 3))
    assert SubnetConfig.from_dict(largest(space).to_dict()) == largest(space)


@pytest.mark.parametrize("engine", ["linas", "nsga2", "random"])
def test_linas_engines_search_the_super_network_space(engine):
    from nas_core.linas.engines import run_search

    sp = SupernetSpace(SupernetSpaceConfig(), n_classes=8, image_size=64)

    class Source:  # a cheap stand-in for measurements: bigger sub-networks are "more accurate"
        def evaluate(self, configs):
            costs = sp.exact_objectives(configs)
            return [{"accuracy": float(np.log(m)), "macs": float(m)} for m in costs["macs"]]

    res = run_search(sp, Source(), engine, budget=12, population=4, seed=0, objectives=("accuracy", "macs"))
    keys = [o.key for o in res.observations]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert all(
        validate_subnet_spec(to_arch_spec(sp.decode(o.genes), sp.space), sp.space) == []
        for o in res.observations
    )
