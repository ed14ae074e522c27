"""Hostile LLM answers: a search step that meets them ends in a clear UserError (or valid proposals), never an
uncaught exception; nothing partial is stored; a timeout respects the configured total across retries; an
answer that echoes the key is stored redacted."""

from __future__ import annotations

import json
import time

import pytest

from nas_core import studio
from nas_core.errors import UserError
from nas_core.space import BlockSpec, default_spec
from tests.llm_server import FakeLlmServer, reply, status

KEY = "sk-hostileTest-9a8B7c6D5e4F3g2H"


def _spec() -> dict:
    s = default_spec()
    return s.__class__(stem=s.stem, blocks=s.blocks + (BlockSpec(type="dwsep", out_channels=48),),
                       head=s.head).to_dict()


def _nested(depth: int) -> str:
    return '{"architecture": ' + "[" * depth + "]" * depth + ', "rationale": "deep"}'


HOSTILE = {
    "prose": [reply("I think a wider network would be fairer. Let me know!")],
    "code": [reply("```python\nimport os\nos.system('rm -rf /')\n```")],
    "truncated_json": [reply('{"architecture": {"stem": {"out_channels": 32, "kern')],
    "nesting_past_the_parser": [reply(_nested(30_000))],
    "nan": [reply('{"architecture": {"stem": {"out_channels": NaN, "kernel": 3, "stride": 1}, "blocks": [], '
                  '"head": {"hidden": 0, "dropout": 0.0}}, "rationale": "nan"}')],
    "two_megabytes": [reply('{"architecture": {}, "rationale": "' + "x" * 2_000_000 + '"}')],
    "json_array_of_numbers": [reply("[1, 2, 3]")],
    "http_429_forever": [status(429, headers={"retry-after-ms": "5"})],
    "http_500": [status(500, message="internal error", headers={"retry-after-ms": "5"})],
    "wrong_types": [reply(json.dumps({"architecture": {"stem": "big", "blocks": "many"}, "rationale": 7}))],
    "empty_answer": [reply("")],
}


@pytest.fixture
def llm_run(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()

    def make(srv, **llm):
        cfg = studio.default_config(dataset=tiny_dataset, engine="llm", name="hostile")
        cfg = studio.build_config(cfg, llm={"base_url": srv.base_url, "model": "fake", "max_retries": 1,
                                            "http_retries": 1, "timeout_s": 5, **llm})
        run_id = studio.create_run(store, cfg, api_key=KEY)
        return studio.session(store, run_id, api_key=KEY)

    yield store, make
    store.close()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_answer_ends_the_step_with_a_message_and_stores_nothing_partial(llm_run, case):
    store, make = llm_run
    with FakeLlmServer(HOSTILE[case]) as srv:
        sess = make(srv)
        with pytest.raises(UserError) as info:
            sess.propose("cli")
    msg = str(info.value)
    assert msg and "Traceback" not in msg and len(msg) < 5000
    assert store.list_candidates(sess.run_id) == []
    (it,) = store.list_iterations(sess.run_id)
    assert it.status == "failed" and it.error
    calls = store.list_llm_calls(sess.run_id)
    assert calls and all(len(c.raw_answer or "") <= 200_000 for c in calls)


def test_the_timeout_is_one_deadline_across_http_retries(llm_run):
    store, make = llm_run
    with FakeLlmServer([reply(json.dumps({"architecture": _spec(), "rationale": "late"}), delay_s=3.0)]) as srv:
        sess = make(srv, timeout_s=0.6, http_retries=2)
        start = time.monotonic()
        with pytest.raises(UserError, match="did not answer within 0.6 s"):
            sess.propose("cli")
        elapsed = time.monotonic() - start
    # Per-try timeouts would take 3 x 0.6 s plus backoff; one deadline ends after about 0.6 s.
    assert elapsed < 1.5, elapsed


def test_an_answer_echoing_the_key_is_stored_redacted(llm_run, tmp_path):
    store, make = llm_run
    answer = json.dumps({"architecture": _spec(), "rationale": f"as you asked, key {KEY}"})
    with FakeLlmServer([reply(answer)]) as srv:
        sess = make(srv)
        (cand,) = sess.propose("cli")
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in cand.rationale and "[redacted]" in cand.rationale
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("app.db*"))
    assert KEY.encode() not in raw
