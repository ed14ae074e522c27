"""Property tests for nas_core.space: encoding, sampling, mutation, keys, validation, Choices."""

import dataclasses
import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nas_core.errors import UserError
from nas_core.space import (
    ArchSpec,
    BlockSpec,
    Choices,
    SpecError,
    StemSpec,
    canonical_key,
    decode,
    default_spec,
    encode,
    mutate,
    sample,
    validate,
)

DEFAULT = Choices.default()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def choices_st(draw) -> Choices:
    """Random Choices: non-empty sub-lists of the default values and a block-count range."""
    values = {}
    for f in dataclasses.fields(Choices):
        default = getattr(DEFAULT, f.name)
        if isinstance(default, tuple):
            picked = draw(st.lists(st.sampled_from(default), min_size=1, max_size=len(default), unique=True))
            values[f.name] = tuple(picked)
    lo = draw(st.integers(1, 4))
    hi = draw(st.integers(lo, 6))
    return Choices(min_blocks=lo, max_blocks=hi, **values)


@st.composite
def genes_st(draw, choices: Choices | None = None) -> tuple[Choices, list[int]]:
    choices = choices or draw(choices_st())
    genes = [draw(st.integers(lo, hi)) for lo, hi in choices.gene_bounds()]
    return choices, genes


@st.composite
def spec_st(draw) -> tuple[Choices, ArchSpec]:
    choices, genes = draw(genes_st())
    return choices, decode(genes, choices)


def test_default_choices_load_and_match_the_dataclass_defaults():
    choices = Choices.default()
    assert choices == Choices()
    assert choices.n_genes == len(choices.gene_bounds()) == 1 + 3 + 8 * 10 + 2
    assert validate(default_spec(), choices, 32) == []


@FAST
@given(spec_st())
def test_decode_inverts_encode(cs):
    choices, spec = cs
    assert validate(spec, choices) == []
    assert decode(encode(spec, choices), choices) == spec


@FAST
@given(genes_st())
def test_encode_of_decode_only_loses_inactive_genes(cg):
    choices, genes = cg
    spec = decode(genes, choices)
    again = encode(spec, choices)
    assert decode(again, choices) == spec
    # Active genes survive the round trip: depth, stem, and the head are always active.
    assert again[:4] == genes[:4]
    assert again[-2:] == genes[-2:]


@FAST
@given(choices_st(), st.integers(0, 2**32 - 1))
def test_sample_is_valid_and_deterministic(choices, seed):
    spec = sample(choices, random.Random(seed))
    assert validate(spec, choices) == []
    assert choices.min_blocks <= len(spec.blocks) <= choices.max_blocks
    assert sample(choices, random.Random(seed)) == spec


def _has_freedom(choices: Choices) -> bool:
    """Some edit can change a network under these choices."""
    multi = any(len(v) > 1 for v in dataclasses.asdict(choices).values() if isinstance(v, tuple))
    return multi or choices.min_blocks < choices.max_blocks


@FAST
@given(spec_st(), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_mutate_is_valid_and_differs(cs, seed, n_edits):
    choices, spec = cs
    assume(_has_freedom(choices))
    child = mutate(spec, choices, random.Random(seed), n_edits=n_edits)
    assert validate(child, choices) == []
    assert child.key != spec.key
    assert child != spec


@FAST
@given(spec_st())
def test_dict_and_json_round_trip(cs):
    _, spec = cs
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).key == spec.key


@FAST
@given(spec_st(), st.sampled_from([2, 3, 4, 6]))
def test_expand_of_non_mbconv_blocks_is_inactive(cs, expand):
    _, spec = cs
    i = next((i for i, b in enumerate(spec.blocks) if b.type != "mbconv"), None)
    assume(i is not None)
    blocks = list(spec.blocks)
    blocks[i] = dataclasses.replace(blocks[i], expand=expand)
    raw = dataclasses.replace(spec, blocks=tuple(blocks))  # not normalized on purpose
    assert raw != spec
    assert canonical_key(raw) == spec.key
    assert ArchSpec.from_dict(raw.to_dict()) == spec


@FAST
@given(genes_st(), st.data())
def test_genes_beyond_the_depth_are_inactive(cg, data):
    choices, genes = cg
    depth = choices.min_blocks + genes[0]
    assume(depth < choices.max_blocks)
    other = list(genes)
    start = 4 + depth * 10  # depth gene + 3 stem genes + the active block slots
    for j in range(start, start + (choices.max_blocks - depth) * 10):
        lo, hi = choices.gene_bounds()[j]
        other[j] = data.draw(st.integers(lo, hi))
    assert decode(other, choices) == decode(genes, choices)
    assert decode(other, choices).key == decode(genes, choices).key


@FAST
@given(genes_st(choices=DEFAULT), genes_st(choices=DEFAULT))
def test_different_networks_get_different_keys(a, b):
    spec_a, spec_b = decode(a[1], DEFAULT), decode(b[1], DEFAULT)
    if spec_a == spec_b:
        assert spec_a.key == spec_b.key
    else:
        assert spec_a.key != spec_b.key


def test_keys_differ_for_every_single_field_change():
    spec = default_spec()
    keys = {spec.key}
    variants = [
        dataclasses.replace(spec, stem=dataclasses.replace(spec.stem, kernel=5)),
        dataclasses.replace(spec, head=dataclasses.replace(spec.head, hidden=64)),
    ]
    for name, value in [("type", "residual"), ("out_channels", 48), ("kernel", 5), ("stride", 2),
                        ("norm", "group"), ("act", "silu"), ("se", True), ("dropout", 0.1), ("pool", "avg")]:
        blocks = list(spec.blocks)
        blocks[1] = dataclasses.replace(blocks[1], **{name: value})
        variants.append(dataclasses.replace(spec, blocks=tuple(blocks)))
    mb = dataclasses.replace(spec.blocks[0], type="mbconv", expand=2)
    variants.append(dataclasses.replace(spec, blocks=(mb, *spec.blocks[1:])))
    variants.append(dataclasses.replace(spec, blocks=(dataclasses.replace(mb, expand=4), *spec.blocks[1:])))
    variants.append(dataclasses.replace(spec, blocks=spec.blocks[:2]))
    for v in variants:
        keys.add(v.key)
    assert len(keys) == len(variants) + 1


@pytest.mark.parametrize(
    ("path", "edit", "field", "allowed"),
    [
        ("stem", {"stem": {"out_channels": 17}}, "stem.out_channels", "[8, 16, 24, 32, 48, 64]"),
        ("block", {"kernel": 4}, "blocks[0].kernel", "[3, 5, 7]"),
        ("block", {"norm": "batchnorm"}, "blocks[0].norm", "['batch', 'group', 'layer', 'instance', 'none']"),
        ("block", {"type": "transformer"}, "blocks[0].type", "['conv', 'residual', 'mbconv', 'dwsep']"),
        ("block", {"type": "mbconv", "expand": 5}, "blocks[0].expand", "[1, 2, 3, 4, 6]"),
        ("block", {"dropout": 0.15}, "blocks[0].dropout", "[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]"),
        ("head", {"head": {"hidden": 100}}, "head.hidden", "[0, 64, 128, 256, 512, 1024]"),
    ],
)
def test_validation_names_the_field_and_the_allowed_values(path, edit, field, allowed):
    data = default_spec().to_dict()
    if path == "block":
        data["blocks"][0].update(edit)
    else:
        data[path].update(edit[path])
    errors = validate(ArchSpec.from_dict(data), DEFAULT)
    assert len(errors) == 1
    assert errors[0].startswith(field)
    assert allowed in errors[0]


def test_validation_counts_blocks_and_checks_the_resolution():
    spec = default_spec()
    too_few = dataclasses.replace(spec, blocks=spec.blocks[:1])
    assert validate(too_few, DEFAULT) == ["blocks: 1 block(s); allowed: 2 to 8"]
    shrinking = dataclasses.replace(
        spec, stem=StemSpec(16, 3, 2), blocks=tuple(BlockSpec(stride=2, pool="max") for _ in range(4))
    )
    assert validate(shrinking, DEFAULT) == []
    errors = validate(shrinking, DEFAULT, input_size=32)
    assert len(errors) == 1 and errors[0].startswith("blocks[2]") and "1x1" in errors[0]


def test_spec_parsing_rejects_typos_and_wrong_types():
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict({"stem": {"out_chanels": 16}, "blocks": [{"kernel": "3"}], "extra": 1})
    err = info.value
    assert isinstance(err, UserError)
    text = str(err)
    assert "out_chanels" in text and "blocks[0].kernel" in text and "extra" in text
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{blocks: [")
    with pytest.raises(SpecError, match="must be a JSON object"):
        ArchSpec.from_dict([1, 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kernal": [3]}, "unknown field(s) ['kernal']"),
        ({"kernel": []}, "choices.kernel: must be a non-empty list"),
        ({"kernel": 3}, "choices.kernel: must be a non-empty list"),
        ({"kernel": ["3"]}, "choices.kernel: values must be int"),
        ({"se": [0, 1]}, "choices.se: values must be bool"),
        ({"type": ["conv", "lstm"]}, "unknown block type(s) ['lstm']"),
        ({"min_blocks": 5, "max_blocks": 3}, "min_blocks (5) is greater than max_blocks (3)"),
        ({"min_blocks": 0}, "choices.min_blocks: must be a positive integer"),
        ({"max_params": -1}, "choices.max_params: must be a positive integer or null"),
        ({"max_macs": True}, "choices.max_macs: must be a positive integer or null"),
        ({"kernel": [3, 4]}, "choices.kernel"),
        ({"out_channels": [0, 16]}, "choices.out_channels"),
        ({"dropout": [0.0, 1.0]}, "choices.dropout"),
        ({"head_hidden": [-1, 0]}, "choices.head_hidden"),
        ({"stride": [0]}, "choices.stride"),
    ],
)
def test_choices_from_dict_rejects_bad_input_clearly(data, message):
    with pytest.raises(SpecError) as info:
        Choices.from_dict(data)
    assert message in str(info.value)


@pytest.mark.parametrize("data", [None, [1, 2], "kernel"])
def test_choices_from_dict_rejects_non_objects(data):
    with pytest.raises(SpecError, match="must be a JSON object"):
        Choices.from_dict(data)


def test_choices_round_trip_and_caps():
    custom = Choices.from_dict({"kernel": [3, 5], "max_blocks": 4, "max_params": None, "dropout": [0, 0.25]})
    assert custom.kernel == (3, 5) and custom.max_params is None and custom.dropout == (0.0, 0.25)
    assert Choices.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom


def test_choices_with_long_decimals_still_round_trip():
    choices = Choices.from_dict({"dropout": [0.0, 0.123456], "head_dropout": [0.333333]})
    for seed in range(20):
        spec = sample(choices, random.Random(seed))
        assert validate(spec, choices) == []
        assert decode(encode(spec, choices), choices) == spec
