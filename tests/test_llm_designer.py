"""The LLM designer against a real local HTTP server through the real openai SDK.

Every scripted case ends with a valid proposal or a clear error; nothing the server sends is executed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_core.designers.base import DesignContext
from nas_core.designers.llm.client import LlmClient, LlmError, LlmSettings, redact
from nas_core.designers.llm.designer import LlmDesigner, LlmDesignError
from nas_core.designers.llm.parse import AnswerError, parse_answer
from nas_core.designers.llm.prompt import PromptError, PromptParts
from nas_core.settings import TrainSettings
from nas_core.space import BlockSpec, Choices, default_spec, validate
from tests.designers.fakes import make_candidate, make_metrics
from tests.llm_server import FakeLlmServer, reply, status

KEY = "sk-test-SECRET-0123456789abcdef"
GOOD = default_spec()
OTHER = GOOD.__class__(stem=GOOD.stem, blocks=GOOD.blocks + (BlockSpec(type="dwsep", out_channels=64),),
                       head=GOOD.head)


def answer(spec=OTHER, rationale="wider for the weakest group") -> str:
    return json.dumps({"architecture": spec.to_dict(), "rationale": rationale})


def ctx(**kw) -> DesignContext:
    return DesignContext(choices=Choices.default(), input_shape=(3, 32, 32), n_classes=2, **kw)


def designer(srv, calls, **kw) -> LlmDesigner:
    settings = LlmSettings(base_url=srv.base_url, model="fake", timeout_s=kw.pop("timeout_s", 5),
                           http_retries=kw.pop("http_retries", 2), **kw)
    return LlmDesigner(settings, api_key=KEY, on_call=calls.append)


def test_valid_json_becomes_a_proposal_and_key_is_sent_only_as_header():
    calls = []
    with FakeLlmServer([reply(answer())]) as srv:
        props = designer(srv, calls).propose(ctx())
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
        body = srv.requests[0]
    assert len(props) == 1 and props[0].spec == OTHER and props[0].origin == "llm"
    assert props[0].rationale == "wider for the weakest group"
    assert body["response_format"]["type"] == "json_schema"  # structured outputs tried first
    assert body["messages"][0]["content"].startswith("You are an expert")
    assert len(calls) == 1 and calls[0].error == "" and calls[0].tokens_out > 0
    assert KEY not in json.dumps([c.__dict__ for c in calls], default=str)


def test_prose_and_code_fences_are_tolerated():
    calls = []
    text = "Sure! Here is my design.\n```json\n" + answer() + "\n```\nHope it helps {not json}."
    with FakeLlmServer([reply(text)]) as srv:
        props = designer(srv, calls).propose(ctx())
    assert props[0].spec == OTHER


def test_endpoint_without_structured_outputs_falls_back_down_the_ladder():
    calls = []
    with FakeLlmServer([reply("Answer: " + answer(), refuse_structured=True)]) as srv:
        props = designer(srv, calls).propose(ctx())
        assert srv.requests[0]["response_format"]["type"] == "json_schema"
        assert srv.requests[1]["response_format"]["type"] == "json_object"  # refused too
        assert "response_format" not in srv.requests[2] and srv.n_requests == 3
    assert props[0].spec == OTHER and calls[0].structured is False and calls[0].decoding == "text"


def test_broken_json_goes_back_with_the_error_then_succeeds():
    calls = []
    with FakeLlmServer([reply('{"architecture": {"blocks": [ oops'), reply(answer())]) as srv:
        props = designer(srv, calls).propose(ctx())
        followup = srv.requests[1]["messages"]
    assert props[0].spec == OTHER
    assert [c.attempt for c in calls] == [0, 1] and "no valid JSON" in calls[0].error
    assert followup[-2]["role"] == "assistant" and "no valid JSON" in followup[-1]["content"]


def test_spec_outside_choices_is_fed_back_with_allowed_values():
    bad = OTHER.to_dict()
    bad["blocks"][0]["kernel"] = 4
    bad["stem"]["out_channels"] = 1000
    calls = []
    with FakeLlmServer([reply(json.dumps({"architecture": bad, "rationale": "x"})), reply(answer())]) as srv:
        props = designer(srv, calls).propose(ctx())
        fb = srv.requests[1]["messages"][-1]["content"]
    assert "blocks[0].kernel = 4 (allowed: [3, 5, 7])" in fb and "stem.out_channels = 1000" in fb
    assert validate(props[0].spec, Choices.default()) == []


def test_python_code_is_never_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    code = f"```python\nimport os\nos.system('touch {marker}')\nopen('{marker}', 'w').write('x')\n```"
    calls = []
    with FakeLlmServer([reply(code)]) as srv:
        with pytest.raises(LlmDesignError, match="no valid new architecture in 2 tries"):
            designer(srv, calls, max_retries=1).propose(ctx())
    assert not marker.exists()
    assert len(calls) == 2 and all("no valid JSON" in c.error for c in calls)


def test_two_megabyte_answer_is_capped_before_parsing():
    big = "x" * (2 * 1024 * 1024)
    calls = []
    with FakeLlmServer([reply(big), reply(answer())]) as srv:
        props = designer(srv, calls).propose(ctx())
        fb = srv.requests[1]["messages"]
    assert props[0].spec == OTHER
    assert len(calls[0].raw_answer) == 64 * 1024 and "limit is 65,536" in calls[0].error
    assert len(fb[-2]["content"]) <= 8000  # the echo sent back is short


def test_rate_limit_then_success_uses_backoff():
    calls = []
    with FakeLlmServer([status(429, headers={"retry-after-ms": "20"}), reply(answer())]) as srv:
        props = designer(srv, calls).propose(ctx())
        assert srv.n_requests == 2
    assert props[0].spec == OTHER


def test_server_errors_past_the_retries_are_a_clear_error_without_the_key():
    calls = []
    with FakeLlmServer([status(503, message=f"overloaded, your key {KEY}", headers={"retry-after-ms": "5"})]) as srv:
        with pytest.raises(LlmError) as err:
            designer(srv, calls, http_retries=1).propose(ctx())
        assert srv.n_requests == 2
    assert "HTTP 503" in str(err.value) and KEY not in str(err.value) and "***" in str(err.value)
    assert calls[-1].error and KEY not in calls[-1].error


def test_no_answer_until_the_timeout():
    calls = []
    with FakeLlmServer([reply(answer(), delay_s=2.0)]) as srv:
        with pytest.raises(LlmError, match="did not answer within 0.3 s"):
            designer(srv, calls, timeout_s=0.3, http_retries=0).propose(ctx())


def test_spec_already_measured_is_sent_back_as_duplicate():
    measured = make_candidate(1, make_metrics(), spec=OTHER)
    calls = []
    third = OTHER.__class__(stem=OTHER.stem, blocks=OTHER.blocks[:2], head=OTHER.head)
    with FakeLlmServer([reply(answer(OTHER)), reply(answer(third))]) as srv:
        props = designer(srv, calls).propose(ctx(history=(measured,)))
        prompt = srv.requests[0]["messages"][1]["content"]
        fb = srv.requests[1]["messages"][-1]["content"]
    assert "already proposed or measured" in fb and props[0].spec == third
    # the prompt carried the best-so-far design and its metrics in the paper's text form
    assert "Unfairness Score: 0.0500" in prompt and "Fairness Detail: [male:" in prompt


def test_several_proposals_per_round_are_distinct():
    third = OTHER.__class__(stem=OTHER.stem, blocks=OTHER.blocks[:2], head=OTHER.head)
    calls = []
    with FakeLlmServer([reply(answer(OTHER)), reply(answer(OTHER)), reply(answer(third))]) as srv:
        props = designer(srv, calls).propose(ctx(n=2))
    assert [p.spec for p in props] == [OTHER, third]


def test_unknown_placeholder_is_reported_before_anything_is_sent():
    with FakeLlmServer([reply(answer())]) as srv:
        with pytest.raises(PromptError, match=r"\{best_metric\} in PromptConst.*Known placeholders"):
            LlmDesigner(LlmSettings(base_url=srv.base_url, model="m"),
                        parts=PromptParts(const="{best_metric}"), api_key=KEY)
        assert srv.n_requests == 0


def test_unreachable_endpoint():
    client = LlmClient(LlmSettings(base_url="http://127.0.0.1:9/v1", model="m", http_retries=0, timeout_s=2))
    with pytest.raises(LlmError, match="cannot reach"):
        client.chat([{"role": "user", "content": "hi"}])


def test_settings_refuse_secrets_and_key_resolution(monkeypatch):
    with pytest.raises(LlmError, match="must not contain secrets"):
        LlmSettings.from_dict({"model": "m", "api_key": KEY})
    monkeypatch.setenv("EQUINAS_LLM_API_KEY", "env-key-1234567890")
    from nas_core.designers.llm.client import resolve_api_key

    assert resolve_api_key() == "env-key-1234567890" and resolve_api_key("mem") == "mem"
    assert redact(f"bad key {KEY} / {KEY[:8]}...", KEY) == "bad key *** / ***..."


def test_parse_answer_shapes():
    assert parse_answer(json.dumps(OTHER.to_dict())).spec == OTHER  # bare spec tolerated
    with pytest.raises(AnswerError, match="no \"architecture\" field"):
        parse_answer('{"design": 1}')
    with pytest.raises(AnswerError, match="unknown field"):
        parse_answer('{"architecture": {"blocks": [{"typ": "conv"}]}}')


def test_endpoint_failure_after_a_proposal_keeps_the_proposal():
    calls = []
    with FakeLlmServer([reply(answer()), status(500, headers={"retry-after-ms": "5"})]) as srv:
        props = designer(srv, calls, http_retries=0).propose(ctx(n=2))
    assert [p.spec for p in props] == [OTHER] and "HTTP 500" in calls[-1].error


# ---- every scripted case through a real session and store: a candidate, or a failure on the iteration

def _session_case(tmp_path, script, llm_kw=None, measured=None):
    from nas_core.runconfig import RunConfig
    from nas_core.session import Session
    from nas_core.store import Store

    db = tmp_path / "case.db"
    with FakeLlmServer(script) as srv, Store.open(db) as store:
        settings = LlmSettings(base_url=srv.base_url, model="fake", max_retries=1, http_retries=1,
                               **(llm_kw or {"timeout_s": 5}))
        cfg = RunConfig(name="c", dataset="/x", n_classes=2, dataset_summary="x", engine="llm", llm=settings,
                        choices=Choices.default(), train=TrainSettings(image_size=32))
        s = Session.create_run(store, cfg, api_key=KEY)
        if measured is not None:
            from nas_core.records import Proposal

            c = store.add_candidate(s.run_id, 0, Proposal(spec=measured, origin="human"))
            store.set_metrics(c.id, make_metrics())
            store.transition(c.id, ["proposed"], "done", "test")
        try:
            cands, error = s.propose(), ""
        except Exception as exc:  # noqa: BLE001 - the case decides what is expected
            cands, error = [], str(exc)
        it = store.list_iterations(s.run_id)[-1]
        calls = store.list_llm_calls(s.run_id)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("case.db*"))
    assert KEY.encode() not in data, "the API key reached the database file"
    return cands, error, it, calls


BROKEN = '{"architecture": {"blocks": [ oops'
OUTSIDE = json.dumps({"architecture": {**OTHER.to_dict(), "stem": {"out_channels": 1000, "kernel": 3,
                                                                    "stride": 1}}})
CODE = "```python\nimport os\nos.system('touch /tmp/equinas_pwned_marker')\n```"

CASES = {
    "valid json": ([reply(answer())], {}, None, None),
    "prose and fences": ([reply("Here:\n```json\n" + answer() + "\n```\nthanks")], {}, None, None),
    "broken json": ([reply(BROKEN)], {}, None, "no valid JSON"),
    "outside the choices": ([reply(OUTSIDE)], {}, None, "stem.out_channels = 1000 (allowed: [8, 16"),
    "python code": ([reply(CODE)], {}, None, "no valid JSON"),
    "2 MB answer": ([reply("y" * 2_000_000)], {}, None, "limit is 65,536"),
    "429 then success": ([status(429, headers={"retry-after-ms": "10"}), reply(answer())], {}, None, None),
    "timeout": ([reply(answer(), delay_s=2.0)], {"timeout_s": 0.3}, None, "did not answer within 0.3 s"),
    "already measured": ([reply(answer())], {}, OTHER, "already proposed or measured"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_scripted_case_ends_in_a_candidate_or_a_recorded_failure(case, tmp_path):
    script, llm_kw, measured, expected_error = CASES[case]
    marker = Path("/tmp/equinas_pwned_marker")
    marker.unlink(missing_ok=True)
    cands, error, it, calls = _session_case(tmp_path, script, llm_kw or None, measured)
    assert calls, "every call is recorded"
    if expected_error is None:
        assert len(cands) == 1 and cands[0].spec == OTHER and it.status == "waiting", error
        assert calls[-1].error == "" and calls[-1].raw_answer
    else:
        assert not cands and it.status == "failed" and expected_error in it.error, (it.status, it.error)
        assert expected_error in error
    assert not marker.exists()
    assert all(len(c.raw_answer) <= 64 * 1024 for c in calls)



# ---- constrained decoding: each rung against a server that supports only that rung (real SDK, HTTP)

from nas_core.designers.llm.schema import answer_schema, proposal_schema  # noqa: E402
from nas_core.designers.validation import spec_problems  # noqa: E402


def _valid_and_new(props, c):
    keys = [p.spec.key for p in props]
    assert len(set(keys)) == len(keys) and not set(keys) & set(c.known_keys)
    for p in props:
        assert spec_problems(p.spec, c) == [], p.spec


def test_schema_following_server_gets_the_choices_schema_and_gives_valid_proposals():
    calls = []
    c = ctx()
    with FakeLlmServer(mode="schema", seed=3) as srv:
        props = designer(srv, calls, max_retries=8).propose(c)
        sent = srv.requests[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"] == answer_schema(Choices.default())
    _valid_and_new(props, c)
    assert {call.decoding for call in calls} == {"json_schema"} and all(call.structured for call in calls)


def test_json_object_only_server_is_used_with_json_object_and_remembered():
    calls = []
    c = ctx()
    with FakeLlmServer(mode="json_object", knows=proposal_schema(Choices.default()), seed=1) as srv:
        d = designer(srv, calls, max_retries=8)
        first = d.propose(c)
        n_first = srv.n_requests
        second = d.propose(ctx(history=tuple(make_candidate(i + 1, make_metrics(), spec=p.spec)
                                              for i, p in enumerate(first))))
        kinds = [r.get("response_format", {}).get("type") for r in srv.requests]
    assert kinds[0] == "json_schema" and set(kinds[1:]) == {"json_object"}  # refused once, then remembered
    assert srv.n_requests > n_first
    _valid_and_new(first, c)
    assert second[0].spec.key != first[0].spec.key
    assert {call.decoding for call in calls} == {"json_object"}


def test_server_without_any_response_format_gets_plain_text_and_the_json_is_extracted():
    calls = []
    c = ctx()
    with FakeLlmServer(mode="text", knows=proposal_schema(Choices.default()), seed=2) as srv:
        props = designer(srv, calls, max_retries=8).propose(c)
        kinds = [r.get("response_format", {}).get("type") for r in srv.requests]
    assert kinds[:3] == ["json_schema", "json_object", None] and set(kinds[3:]) <= {None}
    _valid_and_new(props, c)
    assert {call.decoding for call in calls} == {"text"} and "```json" in calls[-1].raw_answer


def test_ollama_is_detected_and_gets_the_schema_as_its_native_format_field():
    calls = []
    c = ctx()
    with FakeLlmServer(mode="ollama", knows=proposal_schema(Choices.default()), seed=4) as srv:
        props = designer(srv, calls, max_retries=8).propose(c)
        body = srv.requests[0]
    assert body["format"] == answer_schema(Choices.default())  # the field Ollama's server reads
    _valid_and_new(props, c)
    assert {call.decoding for call in calls} == {"ollama"}


def test_without_detection_ollama_would_ignore_the_schema():
    # the same Ollama-like server, told to use json_schema only: it answers unconstrained prose
    calls = []
    with FakeLlmServer(mode="ollama", knows=proposal_schema(Choices.default()), seed=4) as srv:
        designer(srv, calls, decoding="json_schema", max_retries=8).propose(ctx())
        assert all("format" not in r for r in srv.requests)
    assert calls[0].decoding == "json_schema" and calls[0].raw_answer.startswith("Here is my design")


def test_a_pinned_rung_the_server_refuses_is_a_clear_error():
    calls = []
    with FakeLlmServer(mode="text", knows=proposal_schema(Choices.default())) as srv:
        with pytest.raises(LlmError, match="HTTP 400.*decoding 'json_object'.*set decoding to auto"):
            designer(srv, calls, decoding="json_object").propose(ctx())
        assert srv.n_requests == 1


def test_decoding_setting_is_checked_and_old_structured_settings_still_work():
    with pytest.raises(LlmError, match="decoding must be one of auto, json_schema, ollama, json_object, text"):
        LlmSettings(decoding="grammar")
    assert LlmSettings(structured="off").ladder() == ("text",)
    assert LlmSettings(structured="on").ladder() == ("json_schema",)
    assert LlmSettings().ladder(ollama=True) == ("ollama", "json_object", "text")
    assert LlmSettings.from_dict({"model": "m", "structured": "auto"}).decoding == "auto"  # an old run config


def test_follow_up_lists_each_problem_once_with_allowed_values_of_only_the_wrong_fields():
    bad = default_spec().to_dict()
    bad["blocks"] = [dict(bad["blocks"][0], kernel=9, norm="ok", act="swish", pool="none") for _ in range(8)]
    bad["stem"]["kernel"] = 54
    calls = []
    with FakeLlmServer([reply(json.dumps({"architecture": bad, "rationale": "x"})), reply(answer())]) as srv:
        designer(srv, calls).propose(ctx())
        fb = srv.requests[1]["messages"][-1]["content"]
    assert len(fb) <= 900, fb
    assert fb.count("[3, 5, 7]") == 2  # stem.kernel and blocks[].kernel, each once
    assert fb.count("'batch', 'group'") == 1 and fb.count("'relu', 'relu6'") == 1
    assert "blocks[0].kernel = 9, blocks[1].kernel = 9, blocks[2].kernel = 9, blocks[3].kernel = 9 and 4 more" in fb
    # fields that were right are not listed, nor their allowed values
    assert "out_channels" not in fb and "pool" not in fb and "[16, 24, 32" not in fb and "'max', 'avg'" not in fb
    assert "stem.kernel = 54 (allowed: [3, 5, 7])" in fb


def test_several_proposals_come_from_one_call_and_are_deduplicated():
    measured = make_candidate(1, make_metrics(), spec=OTHER)
    c = ctx(history=(measured,), n=3)
    third = OTHER.__class__(stem=OTHER.stem, blocks=OTHER.blocks[:2], head=OTHER.head)
    fourth = OTHER.__class__(stem=OTHER.stem, blocks=OTHER.blocks[1:], head=OTHER.head)
    first = json.dumps({"proposals": [{"architecture": s.to_dict(), "rationale": "r"}
                                      for s in (OTHER, GOOD, GOOD)]})  # measured, new, repeated
    again = json.dumps({"proposals": [{"architecture": s.to_dict(), "rationale": "r"} for s in (third, fourth)]})
    calls = []
    with FakeLlmServer([reply(first), reply(again)]) as srv:
        props = designer(srv, calls).propose(c)
        schemas = [r["response_format"]["json_schema"]["schema"] for r in srv.requests]
        fb = srv.requests[1]["messages"][-1]["content"]
    assert [p.spec for p in props] == [GOOD, third, fourth]
    assert schemas[0]["properties"]["proposals"]["minItems"] == 3
    assert schemas[1]["properties"]["proposals"]["minItems"] == 2  # only the missing ones are asked for
    assert "proposal 1: this architecture was already proposed or measured" in fb
    assert "proposal 3: this architecture was already proposed" in fb and "give 2 new design(s)" in fb
    assert [call.accepted for call in calls] == [1, 2]


def test_several_proposals_against_the_schema_following_server():
    calls = []
    c = ctx(n=3)
    with FakeLlmServer(mode="schema", seed=5) as srv:
        props = designer(srv, calls, max_retries=8).propose(c)
    assert len(props) == 3
    _valid_and_new(props, c)


def test_super_network_runs_ask_for_sub_networks_in_the_super_networks_shape():
    from nas_core.supernet.space import SupernetSpaceConfig, choices_for_supernet, validate_subnet_spec

    c = DesignContext(choices=choices_for_supernet(), input_shape=(3, 32, 32), n_classes=2, evaluation="supernet")
    calls = []
    with FakeLlmServer(mode="schema", seed=6) as srv:
        props = designer(srv, calls, max_retries=8).propose(c)
        body = srv.requests[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema == answer_schema(None, 1, SupernetSpaceConfig()) and "subnetwork" in schema["properties"]
    assert '"subnetwork"' in body["messages"][-1]["content"]  # the prompt explains the shape too
    assert validate_subnet_spec(props[0].spec) == [] and spec_problems(props[0].spec, c) == []


# ---- a whole search with the llm engine against each kind of server (CLI, store, in-process worker)

E2E_TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32", "--device", "cpu", "--threads", "1"]
CUSTOM_CHOICES = {
    "min_blocks": 2, "max_blocks": 3, "stem_out_channels": [8, 16], "type": ["conv", "dwsep", "mbconv"],
    "out_channels": [16, 24], "kernel": [3, 5], "expand": [2, 3], "pool": ["none", "max"], "head_hidden": [0, 32],
}


def _search(tmp_path, capsys, dataset, srv, *extra):
    from nas_core.cli import main

    db = tmp_path / "e2e.db"
    argv = ["search", "--db", db, "--dataset", dataset, "--engine", "llm", "--base-url", srv.base_url,
            "--model", "fake", "--iterations", 1, "--auto-approve", "--json", "--llm-retries", 8,
            *E2E_TINY, *extra]
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err + out.out[-3000:]
    report = json.loads(out.out)
    from nas_core.store import Store

    with Store.open(db) as store:
        run = store.get_run(report["run_id"])
        cands = [c for c in store.list_candidates(run.id) if c.origin != "baseline"]
        calls = store.list_llm_calls(run.id)
    return report, cands, calls


def _measured_and_valid(report, cands, choices, n, supernet=False):
    from nas_core.supernet.space import validate_subnet_spec

    assert report["best"] is not None and report["best"]["status"] == "done"
    assert len(cands) == n and len({c.key for c in cands}) == n
    for c in cands:
        assert c.origin == "llm" and c.status == "done" and c.metrics is not None, (c.status, c.error)
        assert validate(c.spec, choices, 32) == [], c.spec
        if supernet:
            assert validate_subnet_spec(c.spec) == [] and c.metrics.estimate


@pytest.mark.slow
def test_search_against_a_schema_following_server_default_choices(tiny_dataset, tmp_path, capsys):
    with FakeLlmServer(mode="schema", seed=11) as srv:
        report, cands, calls = _search(tmp_path, capsys, tiny_dataset, srv, "--per-iteration", 2)
        assert all(r["response_format"]["type"] == "json_schema" for r in srv.requests)
    _measured_and_valid(report, cands, Choices.default(), 2)
    assert {c.decoding for c in calls} == {"json_schema"}


@pytest.mark.slow
def test_search_against_a_schema_following_server_custom_choices(tiny_dataset, tmp_path, capsys):
    path = tmp_path / "choices.json"
    path.write_text(json.dumps(CUSTOM_CHOICES))
    custom = Choices.from_dict(CUSTOM_CHOICES)
    with FakeLlmServer(mode="schema", seed=12) as srv:
        report, cands, calls = _search(tmp_path, capsys, tiny_dataset, srv, "--choices", path)
        sent = srv.requests[0]["response_format"]["json_schema"]["schema"]
    assert sent == answer_schema(custom)
    _measured_and_valid(report, cands, custom, 1)
    assert {c.decoding for c in calls} == {"json_schema"}


@pytest.mark.slow
def test_search_in_a_super_network_run_against_a_schema_following_server(tiny_dataset, tmp_path, capsys,
                                                                         monkeypatch):
    from nas_core.store import Store
    from nas_core.supernet import jobs
    from nas_core.supernet.space import SupernetSpaceConfig, choices_for_supernet
    from nas_core.supernet.train import SupernetTrainSettings
    from nas_core.worker import run_pending

    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path / "supernets"))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    db = str(tmp_path / "e2e.db")
    req = jobs.TrainRequest(  # the designers' super-network space, trained for one epoch on the tiny data set
        dataset=str(tiny_dataset), train=TrainSettings(image_size=32, seed=0, max_epochs=1),
        space=SupernetSpaceConfig(), db=db,
        settings=SupernetTrainSettings(max_epochs=1, batch_size=48, n_random=1, calib_batches=2),
    )
    with Store.open(db) as store:
        store.enqueue_job("supernet_train", req.to_dict(), actor="test")
    assert run_pending(db) == 1
    with FakeLlmServer(mode="schema", seed=13) as srv:
        report, cands, calls = _search(tmp_path, capsys, tiny_dataset, srv, "--evaluation", "supernet")
        sent = srv.requests[0]["response_format"]["json_schema"]["schema"]
    assert "subnetwork" in sent["properties"]
    _measured_and_valid(report, cands, choices_for_supernet(), 1, supernet=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["json_object", "text"])
def test_search_against_servers_without_schema_support(mode, tiny_dataset, tmp_path, capsys):
    # the model "read" the Choices in the prompt but slips: a third of its answers hold values outside them
    with FakeLlmServer(mode=mode, knows=proposal_schema(Choices.default()), noise=0.35, seed=14) as srv:
        report, cands, calls = _search(tmp_path, capsys, tiny_dataset, srv)
    _measured_and_valid(report, cands, Choices.default(), 1)
    assert {c.decoding for c in calls} == {mode}
    assert any("(allowed: " in c.error for c in calls), "a slip went back to the model with the allowed values"


def test_the_schema_is_regenerated_from_the_choices_of_each_call():
    narrow = Choices.from_dict({"kernel": [3], "norm": ["group"], "min_blocks": 3, "max_blocks": 4})
    calls = []
    with FakeLlmServer(mode="schema", seed=7) as srv:
        d = designer(srv, calls, max_retries=8)
        d.propose(ctx())
        n_default = srv.n_requests
        props = d.propose(DesignContext(choices=narrow, input_shape=(3, 32, 32), n_classes=2))
        schemas = [r["response_format"]["json_schema"]["schema"] for r in srv.requests]
    assert schemas[0] == answer_schema(Choices.default()) and schemas[-1] == answer_schema(narrow)
    block = schemas[-1]["properties"]["architecture"]["properties"]["blocks"]
    assert (block["minItems"], block["maxItems"]) == (3, 4) and n_default < len(schemas)
    assert all(b.kernel == 3 and b.norm == "group" for b in props[0].spec.blocks)


def test_compact_problems_groups_per_proposal_and_field():
    from nas_core.designers.llm.designer import compact_problems

    lines = compact_problems([
        "proposal 1: blocks[0].kernel = 4 is not allowed; allowed: [3, 5, 7]",
        "proposal 1: blocks[2].kernel = 9 is not allowed; allowed: [3, 5, 7]",
        "proposal 2: blocks[1].kernel = 4 is not allowed; allowed: [3, 5, 7]",
        "proposal 2: blocks: 9 block(s); allowed: 2 to 8",
        "proposal 2: blocks: 9 block(s); allowed: 2 to 8",
        "x" * 1000,
    ])
    assert lines[:3] == [
        "proposal 1: blocks[0].kernel = 4, blocks[2].kernel = 9 (allowed: [3, 5, 7])",
        "proposal 2: blocks[1].kernel = 4 (allowed: [3, 5, 7])",
        "proposal 2: blocks: 9 block(s); allowed: 2 to 8",
    ]
    assert len(lines) == 4 and len(lines[3]) == 300
    many = compact_problems([f"problem {i}" for i in range(40)])
    assert len(many) == 13 and many[-1] == "... and 28 more problems"
