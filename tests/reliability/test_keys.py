"""The API key typed into the app reaches the endpoint for that browser session, and no key is ever stored.

The app is driven with AppTest inside app.py's navigation; the endpoint is the scripted OpenAI-compatible
server of tests/llm_server.py, which keeps every request's headers. Its answer echoes the key (in the
rationale and elsewhere in the text), and afterwards the database's bytes (and its WAL) are grepped.
"""

from __future__ import annotations

import json
import pathlib

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import redact as red
from nas_core import studio
from nas_core.space import BlockSpec, default_spec
from tests.llm_server import FakeLlmServer, reply, status

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY = "sk-typedInApp-7f3Qx9LmN2pR8vT4wZ1c"


def _spec_json() -> dict:
    spec = default_spec()
    spec = spec.__class__(stem=spec.stem, blocks=spec.blocks + (BlockSpec(type="dwsep", out_channels=48),),
                          head=spec.head)
    return spec.to_dict()


# Key-shaped strings that are nobody's key, assembled at run time so secret scanners do not flag the file.
OTHER_KEY = "sk-" + "someoneElse" + "0123456789ABCDEF"
OTHER_TOKEN = "ghp_" + "abcdefghijklmnopqrstuvwxyz0123"


def _echoing_answer() -> str:
    return json.dumps({"architecture": _spec_json(),
                       "rationale": f"I used your key {KEY} (Authorization: Bearer {KEY}) to decide; also "
                                    f"{OTHER_KEY} and token {OTHER_TOKEN}"})


@pytest.fixture
def app_env(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    for var in ("OPENAI_API_KEY", "EQUINAS_LLM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _db_bytes(tmp_path: pathlib.Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("app.db*") if p.is_file())


def test_the_typed_key_reaches_the_endpoint_and_is_stored_nowhere(app_env):
    with FakeLlmServer([reply(_echoing_answer())]) as srv:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        at.run()
        at.switch_page("pages/setup.py").run()
        at.selectbox(key="cfg_engine").set_value("llm").run()
        at.text_input(key="cfg_base_url").input(srv.base_url).run()
        at.text_input(key="cfg_model").input("fake").run()
        at.text_input(key="cfg_api_key").input(KEY).run()
        at.button(key="create_run").click().run()
        assert not at.exception, [e.value for e in at.exception]
        # Create run opened the Search page; the key typed on Setup is still this session's.
        at.switch_page("pages/search.py").run()
        at.button(key="propose").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert srv.headers, "the endpoint was never called"
        assert all(h.get("authorization") == f"Bearer {KEY}" for h in srv.headers), srv.headers

    store = studio.open_store()
    try:
        (run,) = store.list_runs()
        cands = store.list_candidates(run.id)
        assert cands and "[redacted]" in cands[0].rationale
        calls = store.list_llm_calls(run.id)
        assert calls and "[redacted]" in calls[0].raw_answer
    finally:
        store.close()
    raw = _db_bytes(app_env)
    assert KEY.encode() not in raw
    assert KEY[:8].encode() + KEY[8:16].encode() not in raw
    assert OTHER_KEY.encode() not in raw and OTHER_TOKEN.encode() not in raw


def test_another_browser_session_does_not_get_the_key(app_env):
    with FakeLlmServer([reply(_echoing_answer())]) as srv:
        first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        first.run()
        first.switch_page("pages/setup.py").run()
        first.selectbox(key="cfg_engine").set_value("llm").run()
        first.text_input(key="cfg_base_url").input(srv.base_url).run()
        first.text_input(key="cfg_model").input("fake").run()
        first.text_input(key="cfg_api_key").input(KEY).run()
        first.button(key="create_run").click().run()
        second = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)  # another browser
        second.run()
        second.switch_page("pages/search.py").run()
        second.button(key="propose").click().run()
        assert srv.headers and all(h.get("authorization") != f"Bearer {KEY}" for h in srv.headers)


def test_error_text_that_echoes_the_key_is_redacted_in_the_store(app_env):
    store = studio.open_store()
    try:
        cfg = studio.default_config(engine="llm", name="err")
        with FakeLlmServer([status(500, message=f"overloaded; your key {KEY} is fine")]) as srv:
            cfg = studio.build_config(cfg, llm={"base_url": srv.base_url, "model": "fake", "http_retries": 0})
            run_id = studio.create_run(store, cfg, api_key=KEY)
            sess = studio.session(store, run_id, api_key=KEY)
            with pytest.raises(Exception, match="HTTP 500"):
                sess.propose("app")
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    finally:
        store.close()
    assert KEY.encode() not in _db_bytes(app_env)


@pytest.mark.parametrize("text, secret", [
    (f"key={KEY}", KEY),
    ("Authorization: Bearer abc.def-ghi_jkl012345", "abc.def-ghi_jkl012345"),
    ('{"api_key": "hunter2hunter2"}', "hunter2hunter2"),
    ("openai sk-proj-AbCdEfGh0123456789ijkl", "sk-proj-AbCdEfGh0123456789ijkl"),
    ("gh ghp_ABCDEFGHIJKLMNOPqrstuvwxyz012345", "ghp_ABCDEFGHIJKLMNOPqrstuvwxyz012345"),
    ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
    ("hex " + "0123456789abcdef" * 3, "0123456789abcdef" * 3),
    ("b64 Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZkdISUpL", "Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZkdISUpL"),
])
def test_redact_removes_key_shaped_strings(text, secret):
    out = red.redact(text)
    assert secret not in out and "[redacted]" in out


def test_redact_keeps_ordinary_text_and_removes_registered_secrets():
    plain = ("candidate #12 of run 3: accuracy 0.81 at /tmp/pytest-of-root/test_ABCdef123/uploads/x.zip; "
             "ISIC_0000123_downsampled.jpg; train loss 0.41")
    assert red.redact(plain) == plain
    red.register_secret("shortish-but-typed")
    try:
        assert red.redact("echo shortish-but-typed") == "echo [redacted]"
    finally:
        red.forget_secret("shortish-but-typed")
    assert red.redact(None) == ""


def test_log_lines_lose_keys_before_they_are_written(tmp_path):
    import logging

    path = tmp_path / "worker.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("equinas.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    red.install_log_redaction(logger)
    red.register_secret(KEY)
    try:
        logger.warning("calling the endpoint with %s and Bearer %s", KEY, "abcdefgh12345678")
    finally:
        handler.close()
        logger.removeHandler(handler)
    text = path.read_text()
    assert KEY not in text and "abcdefgh12345678" not in text and "[redacted]" in text
