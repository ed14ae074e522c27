"""Every designer that can be imported passes the one contract suite (tests/designers/contract.py)."""

from __future__ import annotations

import importlib
import json
import random

import pytest

from nas_core.designers.heuristic import HeuristicDesigner
from nas_core.designers.random import RandomDesigner
from nas_core.space import sample
from tests.designers.contract import base_context, designer_contract_checks
from tests.llm_server import FakeLlmServer, reply


def _optional(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _llm_script(n: int = 40):
    """Valid, distinct answers of the kind a real model gives (a spec inside prose)."""
    from nas_core.designers.validation import spec_problems

    rng, ctx, out, seen = random.Random(7), base_context(), [], set()
    while len(out) < n:
        s = sample(ctx.choices, rng)
        if s.key in seen or spec_problems(s, ctx):
            continue
        seen.add(s.key)
        out.append(reply("Here you go:\n" + json.dumps({"architecture": s.to_dict(), "rationale": "r"})))
    return out


FACTORIES = {"heuristic": HeuristicDesigner, "random": RandomDesigner}
for _mod, _cls in (("nas_core.linas.designers", "LinasDesigner"), ("nas_core.linas.designers", "Nsga2Designer"),
                   ("nas_core.linas.designers", "RandomSearchDesigner")):
    _c = _optional(_mod, _cls)
    if _c is not None:
        FACTORIES[_cls] = _c


#: Context settings some designers need (NSGA-II takes exactly two objectives).
CONTEXT = {"Nsga2Designer": {"objectives": ("accuracy", "params")}}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_designer_contract(name):
    designer_contract_checks(FACTORIES[name], **CONTEXT.get(name, {}))


def test_llm_designer_contract():
    from nas_core.designers.llm.client import LlmSettings
    from nas_core.designers.llm.designer import LlmDesigner

    with FakeLlmServer(_llm_script()) as srv:
        settings = LlmSettings(base_url=srv.base_url, model="fake", timeout_s=5, max_retries=3)
        designer_contract_checks(lambda: LlmDesigner(settings, api_key="k"))
