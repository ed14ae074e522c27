"""The answer's JSON schema is the run's Choices: what it allows is valid, and every valid spec is allowed.

Both directions are sampled with hypothesis: schema instances with :func:`from_schema` below
(``hypothesis-jsonschema`` 0.23.1, the newest, fails on this hypothesis release: it uses a removed
private API), valid specs with the space's own samplers; instances are checked with ``jsonschema``.
"""

from __future__ import annotations

import json
import random

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_core.designers.llm.parse import parse_answers
from nas_core.designers.llm.schema import (
    answer_schema,
    arch_schema,
    spec_to_subnet,
    subnet_schema,
    subnet_to_spec,
)
from nas_core.space import ArchSpec, Choices, sample, validate
from nas_core.supernet.space import (
    StageConfig,
    SupernetSpaceConfig,
    choices_for_supernet,
    sample_config,
    to_arch_spec,
    validate_subnet_spec,
)

CUSTOM = Choices.from_dict({
    # mbconv with other types and no expand ratio 1: blocks are anyOf two variants
    "min_blocks": 1, "max_blocks": 3, "stem_out_channels": [12], "stem_kernel": [5], "stem_stride": [2],
    "type": ["conv", "mbconv"], "out_channels": [8, 40], "kernel": [3], "stride": [1], "expand": [4, 6],
    "norm": ["group"], "act": ["gelu", "silu"], "se": [True], "dropout": [0.25], "pool": ["avg", "none"],
    "head_hidden": [0, 32], "head_dropout": [0.05], "max_params": None, "max_macs": None,
})
ONLY_MBCONV = Choices.from_dict({"type": ["mbconv"], "expand": [3], "min_blocks": 3, "max_blocks": 3})
NO_MBCONV = Choices.from_dict({"type": ["dwsep", "residual"], "expand": [2, 4]})
CHOICES = {"default": Choices.default(), "custom": CUSTOM, "only mbconv": ONLY_MBCONV, "no mbconv": NO_MBCONV}
GAPS = SupernetSpaceConfig(
    stem_widths=(8, 16), stem_stride=1,
    stages=(StageConfig(widths=(8,), depths=(1, 3), stride=2), StageConfig(widths=(16, 24), depths=(2,), se=True)),
    kernels=(3, 5), expands=(2, 4), head_dropout=0.2,
)
SPACES = {"default": SupernetSpaceConfig(), "tiny": SupernetSpaceConfig.tiny(), "depth gaps": GAPS}


def from_schema(schema):
    """A hypothesis strategy for the JSON values ``schema`` allows (the keywords the answer schemas use)."""
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "object":
        return st.fixed_dictionaries({k: from_schema(v) for k, v in schema["properties"].items()})
    if kind == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems"))
    return {"string": st.text(max_size=40), "boolean": st.booleans(), "integer": st.integers(),
            "number": st.floats(allow_nan=False, allow_infinity=False)}[kind]


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _strict_mode_rules(schema):
    """OpenAI strict mode: every object closed and all its properties required, nothing unsupported."""
    allowed = {"type", "enum", "anyOf", "items", "minItems", "maxItems", "properties", "required",
               "additionalProperties"}
    assert set(schema) <= allowed, set(schema) - allowed
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False
        assert schema["required"] == list(schema["properties"])
        for sub in schema["properties"].values():
            _strict_mode_rules(sub)
    for sub in schema.get("anyOf", []):
        _strict_mode_rules(sub)
    if "items" in schema:
        _strict_mode_rules(schema["items"])


@pytest.mark.parametrize("name", list(CHOICES))
def test_schema_follows_strict_mode_and_names_every_allowed_value(name):
    ch = CHOICES[name]
    schema = answer_schema(ch)
    jsonschema.Draft202012Validator.check_schema(schema)
    _strict_mode_rules(schema)
    _strict_mode_rules(answer_schema(ch, n=3))
    arch = schema["properties"]["architecture"]
    assert arch["properties"]["stem"]["properties"]["kernel"]["enum"] == list(ch.stem_kernel)
    assert arch["properties"]["head"]["properties"]["dropout"] == {"type": "number", "enum": list(ch.head_dropout)}
    blocks = arch["properties"]["blocks"]
    assert (blocks["minItems"], blocks["maxItems"]) == (ch.min_blocks, ch.max_blocks)
    text = json.dumps(schema)
    for value in ch.norm + ch.act + ch.pool:
        assert json.dumps(value) in text


@pytest.mark.parametrize("name", list(CHOICES))
def test_every_instance_the_schema_allows_is_valid(name):
    ch = CHOICES[name]

    @FAST
    @given(from_schema(arch_schema(ch)))
    def check(instance):
        spec = ArchSpec.from_dict(instance)
        assert validate(spec, ch) == [], instance

    check()


@pytest.mark.parametrize("name", list(CHOICES))
def test_every_valid_spec_is_allowed_by_the_schema(name):
    ch = CHOICES[name]
    validator = jsonschema.Draft202012Validator(answer_schema(ch))

    @FAST
    @given(st.integers(0, 2**32))
    def check(seed):
        spec = sample(ch, random.Random(seed))
        assert validate(spec, ch) == []
        validator.validate({"architecture": spec.to_dict(), "rationale": "r"})

    check()


def test_schema_refuses_what_the_issue_saw_followers_produce():
    validator = jsonschema.Draft202012Validator(answer_schema(Choices.default()))
    good = {"architecture": sample(Choices.default(), random.Random(1)).to_dict(), "rationale": ""}
    validator.validate(good)
    for path, value in ((("stem", "kernel"), 54), (("blocks", 0, "norm"), "ok"), (("blocks",), [])):
        bad = json.loads(json.dumps(good))
        target = bad["architecture"]
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value if path != ("blocks",) else good["architecture"]["blocks"][:1]
        assert not validator.is_valid(bad), path


@pytest.mark.parametrize("name", list(SPACES))
def test_super_network_schema_allows_exactly_the_sub_networks(name):
    space = SPACES[name]
    schema = subnet_schema(space)
    _strict_mode_rules(answer_schema(None, 2, space))
    validator = jsonschema.Draft202012Validator(answer_schema(None, 1, space))
    choices = choices_for_supernet(space)

    @FAST
    @given(from_schema(schema))
    def allowed_is_valid(instance):
        spec = subnet_to_spec(instance, space)
        assert validate_subnet_spec(spec, space) == [] and validate(spec, choices) == []
        assert spec_to_subnet(spec, space) == instance

    @FAST
    @given(st.integers(0, 2**32))
    def valid_is_allowed(seed):
        spec = to_arch_spec(sample_config(space, random.Random(seed)), space)
        validator.validate({"subnetwork": spec_to_subnet(spec, space), "rationale": "r"})

    allowed_is_valid()
    valid_is_allowed()


def test_several_proposals_schema_and_parse():
    ch = Choices.default()
    schema = answer_schema(ch, n=3)
    items = schema["properties"]["proposals"]
    assert items["minItems"] == items["maxItems"] == 3

    @FAST
    @given(from_schema(schema))
    def check(instance):
        parsed = parse_answers(json.dumps(instance))
        assert len(parsed) == 3 and all(validate(p.spec, ch) == [] for p in parsed)

    check()


def test_sub_network_answer_errors_speak_in_stage_terms():
    from nas_core.supernet.space import SubnetError

    space = SupernetSpaceConfig.tiny()
    good = spec_to_subnet(to_arch_spec(sample_config(space, random.Random(0)), space), space)
    bad = json.loads(json.dumps(good))
    bad["stage2"]["width"] = 99
    bad["stage1"]["blocks"][0]["kernel"] = 4
    with pytest.raises(SubnetError) as err:
        subnet_to_spec(bad, space)
    assert "stage2.width = 99 is not allowed" in str(err.value)
    assert "stage1.blocks[0].kernel = 4 is not allowed; allowed: [3, 5, 7]" in str(err.value)
