"""The session state machine on a real store, with a fake fast evaluation (metrics recorded directly).

One end-to-end test runs the real worker on the tiny data set (32 px, 1 epoch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_core.designers.llm.client import LlmSettings
from nas_core.errors import UserError
from nas_core.runconfig import RunConfig
from nas_core.session import Session, SessionError
from nas_core.settings import Env, TrainSettings
from nas_core.space import Choices, SpecError, default_spec
from nas_core.store import Store
from tests.designers.fakes import make_metrics
from tests.llm_server import FakeLlmServer, reply

KEY = "sk-session-SECRET-9876543210fedcba"


def config(**kw) -> RunConfig:
    base = dict(name="t", dataset="/nowhere", n_classes=3, dataset_summary="tiny test data",
                choices=Choices.from_dict({"max_blocks": 5, "max_params": 2_000_000}),
                train=TrainSettings(image_size=32, max_epochs=1), env=Env(repeats=2, warmup=1))
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture()
def store(tmp_path):
    s = Store.open(tmp_path / "run.db")
    yield s
    s.close()


def fake_worker(store, acc=lambda c: 0.7, fail=()):
    """Run every queued job 'instantly': record Metrics (or a failure) through the store's job API."""
    n = 0
    while (job := store.claim_job("fake-worker")) is not None:
        c = store.get_candidate(job.candidate_id)
        if c.id in fail:
            store.fail_job(job.id, "scripted failure", "fake-worker")
        else:
            a = acc(c)
            store.record_result(job.id, make_metrics(acc=a, unfairness=0.2 - a / 10).to_dict(), "fake-worker")
        n += 1
    return n


def test_propose_approve_evaluate_next(store):
    s = Session.create_run(store, config())
    first = s.propose(actor="ann")
    assert len(first) == 1 and first[0].status == "proposed" and first[0].spec == default_spec()
    with pytest.raises(SessionError, match="wait for approval"):
        s.propose()
    job = s.approve(first[0].id, actor="ann")
    assert job.kind == "evaluate" and job.payload["arch"] == default_spec().to_dict()
    assert job.payload["train"]["image_size"] == 32 and job.payload["dataset"] == "/nowhere"
    with pytest.raises(SessionError, match="already approved"):
        s.approve(first[0].id, actor="bob")
    with pytest.raises(SessionError, match="evaluation.*queued or running"):
        s.propose()
    assert s.poll().iteration_status == "evaluating"
    # the reason says what to do only when nothing can run the job
    assert "no worker is alive to run them: start one" in s.poll().reason
    store.register_worker("w1")
    assert s.poll().reason.endswith("wait for their results")
    assert fake_worker(store) == 1
    st = s.poll()
    assert st.iteration_status == "done" and st.can_propose and st.best_id == first[0].id
    second = s.propose()
    assert second[0].iteration == 2 and "best candidate #1" in second[0].rationale
    statuses = [(e.from_status, e.to_status) for e in store.events(candidate_id=first[0].id) if e.entity == "candidate"]
    assert statuses == [(None, "proposed"), ("proposed", "queued"), ("queued", "running"), ("running", "done")]


def test_reject_reason_reaches_the_next_prompt_and_rejected_cannot_be_approved(store):
    s = Session.create_run(store, config())
    c = s.propose()[0]
    with pytest.raises(SessionError, match="say why"):
        s.reject(c.id, "  ")
    s.reject(c.id, "too deep for a phone; keep it under 3 blocks", actor="ann")
    with pytest.raises(SessionError, match="is rejected"):
        s.approve(c.id)
    assert s.poll().iteration_status == "done"
    prompt = s.next_prompt()
    assert f"rejected #{c.id}: too deep for a phone" in prompt.user
    assert s.propose()[0].spec.key != c.spec.key


def test_edit_is_validated_and_replaces_the_proposal(store):
    s = Session.create_run(store, config())
    c = s.propose()[0]
    bad = c.spec.to_dict()
    bad["blocks"][0]["kernel"] = 4
    with pytest.raises(SpecError, match=r"blocks\[0\].kernel = 4 is not allowed"):
        s.edit(c.id, bad, actor="ann")
    assert store.get_candidate(c.id).status == "proposed"  # nothing changed
    good = c.spec.to_dict()
    good["blocks"][0]["kernel"] = 5
    new = s.edit(c.id, good, actor="ann", note="larger receptive field")
    assert new.origin == "human-edit" and new.status == "proposed" and new.spec.blocks[0].kernel == 5
    assert store.get_candidate(c.id).status == "rejected"
    assert dict(new.extra)["edited_from"] == c.id
    with pytest.raises(SessionError, match="only a proposed candidate can be edited"):
        s.edit(c.id, good)
    s.approve(new.id)
    assert [f.kind for f in store.list_feedback(s.run_id)] == ["edit"]


def test_state_survives_a_restart(tmp_path):
    db = tmp_path / "r.db"
    with Store.open(db) as st1:
        s1 = Session.create_run(st1, config())
        c = s1.propose()[0]
        run_id = s1.run_id
        # a crash while the next iteration was being proposed leaves an empty 'proposing' iteration
    with Store.open(db) as st2:
        s2 = Session(st2, run_id)
        assert s2.state().pending == (c.id,)
        s2.approve(c.id)
        fake_worker(st2)
        st2.start_iteration(run_id)  # the crashed propose
    with Store.open(db) as st3:
        s3 = Session(st3, run_id)
        new = s3.propose()
        assert new[0].iteration == 2 and len(st3.list_iterations(run_id)) == 2  # reused, not a third


def test_auto_steps_failures_and_budget(store):
    s = Session.create_run(store, config(per_iteration=2, budget=5, engine="random"))
    accs = iter([0.6, 0.75, 0.7, 0.8, 0.65])
    acc_of: dict[int, float] = {}
    failed_first = []
    for _ in range(10):
        r = s.step_auto()
        if r.action == "finished":
            break
        if not failed_first and r.candidates:
            failed_first.append(r.candidates[0])
        fake_worker(store, acc=lambda c: acc_of.setdefault(c.id, next(accs)), fail=failed_first[:1])
    assert "budget of 5" in s.state().reason
    searched = s.searched()
    assert len(searched) == 5 and sum(c.status == "failed" for c in searched) == 1
    assert s.best().id == max((c for c in searched if c.metrics), key=lambda c: c.metrics.test_acc).id
    its = store.list_iterations(s.run_id)
    assert [it.status for it in its] == ["done", "done", "done"] and len(its[-1:]) == 1


def test_all_failed_iteration_is_marked_failed(store):
    s = Session.create_run(store, config())
    c = s.propose()[0]
    s.approve(c.id)
    fake_worker(store, fail=(c.id,))
    s.poll()
    it = store.list_iterations(s.run_id)[0]
    assert it.status == "failed" and "scripted failure" in it.error


def test_candidate_of_another_run_is_refused(store):
    a = Session.create_run(store, config(name="a"))
    b = Session.create_run(store, config(name="b"))
    c = a.propose()[0]
    with pytest.raises(SessionError, match="belongs to run"):
        b.approve(c.id)


def _bad_then_good():
    good = default_spec().to_dict()
    return [reply("```python\nimport os\nos.system('rm -rf /')\n```"),
            reply("I think: " + json.dumps({"architecture": good, "rationale": "a plain CNN to start"}))]


def test_llm_session_records_calls_and_never_the_key(tmp_path):
    db = tmp_path / "llm.db"
    with FakeLlmServer(_bad_then_good()) as srv, Store.open(db) as store:
        cfg = config(engine="llm", llm=LlmSettings(base_url=srv.base_url, model="fake", timeout_s=5))
        s = Session.create_run(store, cfg, api_key=KEY)
        shown = s.next_prompt()  # what the user reviews before pressing "propose"
        c = s.propose()[0]
        assert srv.requests[0]["messages"] == shown.messages()  # exactly what was sent
        assert c.origin == "llm" and c.rationale == "a plain CNN to start"
        calls = store.list_llm_calls(s.run_id)
        assert len(calls) == 2 and "no valid JSON" in calls[0].error and calls[1].error == ""
        assert calls[0].iteration == 1 and "You are an expert" in calls[0].prompt
        assert calls[1].tokens_out and calls[1].model == "fake-model"
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    data = b"".join(p.read_bytes() for p in Path(tmp_path).glob("llm.db*"))
    assert KEY.encode() not in data and b"sk-session" not in data


def test_llm_failure_is_recorded_on_the_iteration(tmp_path):
    with FakeLlmServer([reply("no json here, sorry")]) as srv, Store.open(tmp_path / "f.db") as store:
        cfg = config(engine="llm", llm=LlmSettings(base_url=srv.base_url, model="fake", max_retries=1))
        s = Session.create_run(store, cfg, api_key=KEY)
        with pytest.raises(UserError, match="no valid new architecture in 2 tries"):
            s.propose()
        it = store.list_iterations(s.run_id)[0]
        assert it.status == "failed" and "no valid new architecture" in it.error
        assert len(store.list_llm_calls(s.run_id)) == 2
        assert s.state().can_propose  # the user may fix the prompt and try again


@pytest.mark.slow
def test_end_to_end_with_the_real_worker(tiny_dataset, tmp_path):
    from nas_core.worker import run_pending

    db = tmp_path / "e2e.db"
    with Store.open(db) as store:
        cfg = RunConfig(name="e2e", dataset=str(tiny_dataset), engine="heuristic",
                        train=TrainSettings(image_size=32, max_epochs=1, batch_size=32, n_bootstrap=10),
                        env=Env(repeats=2, warmup=1), device="cpu")
        s = Session.create_run(store, cfg)
        assert s.config.n_classes >= 2 and "images in" in s.config.dataset_summary
        r = s.step_auto()
        assert r.action == "proposed"
        st = s.wait(timeout_s=240, poll_s=0.1, drain=lambda: run_pending(db, poll_s=0.05))
        assert not st.in_flight
        best = s.best()
        assert best is not None and best.status == "done" and best.metrics.epochs == 1
        assert best.metrics.fairness.groups and store.list_iterations(s.run_id)[0].status == "done"


def test_linas_and_nsga2_engines_run_through_the_session(store):
    from nas_core.session import make_designer

    assert make_designer(config(engine="linas")).name == "linas"
    assert make_designer(config(engine="nsga2", objectives=("accuracy", "params"))).name == "nsga2"
    free = Choices.from_dict({"max_blocks": 4, "max_params": None, "max_macs": None})
    s = Session.create_run(store, config(engine="linas", population=3, choices=free,
                                         objectives=("accuracy", "unfairness")))
    first = s.step_auto()
    assert first.action == "proposed" and len(first.candidates) == 3  # the random initial population
    fake_worker(store, acc=lambda c: 0.5 + 0.01 * c.id)
    second = s.step_auto()
    assert second.action == "proposed" and len(second.candidates) == 1  # then per_iteration
    assert all(c.origin == "linas" for c in s.searched())


def test_supernet_runs_queue_supernet_measure_jobs(store, monkeypatch):
    import types

    import nas_core.session as session

    seen = {}

    def make_payload(run, spec, store=None):
        seen["run"], seen["store"] = run.id, store
        return {"spec": spec.to_dict(), "checkpoint": "/ckpt"}

    monkeypatch.setattr(session, "supernet_jobs", types.SimpleNamespace(make_payload=make_payload))
    s = Session.create_run(store, config(evaluation="supernet", choices=Choices.default()))
    assert s.context().evaluation == "supernet" and s.config.choices.type == ("mbconv",)
    c = s.propose()[0]
    from nas_core.supernet.space import validate_subnet_spec

    assert validate_subnet_spec(c.spec) == []
    job = s.approve(c.id)
    assert job.kind == "supernet_measure" and job.payload["checkpoint"] == "/ckpt" and seen["store"] is store


def test_settings_that_keep_candidates_comparable_can_change(store):
    from nas_core.designers.llm.prompt import PromptError

    s = Session.create_run(store, config())
    s.update_settings(prompt={"app": "You design tiny CNNs for {dataset}."}, actor="ann")
    assert s.next_prompt().system == "You design tiny CNNs for tiny test data."
    with pytest.raises(PromptError, match="unknown placeholder"):
        s.update_settings(prompt={"app": "{datset}"})
    s.update_settings(priorities={"mode": "weighted", "objectives": ["accuracy"]})
    assert s.config.priorities.mode == "weighted"
    s.propose()
    with pytest.raises(SessionError, match="train cannot change once a run has candidates"):
        s.update_settings(train=TrainSettings(image_size=64))
    assert s.config.train.image_size == 32


def test_registered_data_set_name_becomes_its_dataset_ref(store, tiny_dataset):
    store.register_dataset(name="tiny", format="isic2019", source=str(tiny_dataset), content_hash="h",
                           columns=[], counts={}, config={"root": str(tiny_dataset)}, cache_path="")
    s = Session.create_run(store, RunConfig(name="n", dataset="tiny", train=TrainSettings(image_size=32)))
    ref = s.config.dataset_ref
    assert s.config.dataset == "tiny" and s.config.n_classes == 8
    assert ref is not None and ref.name == "tiny" and ref.root == str(Path(tiny_dataset).resolve())
    assert ref.content_hash == "h" and ref.attribute_names == ("sex", "age")
    assert s.run.dataset_id == store.find_dataset("tiny").id and s.run.dataset_hash == "h"
    assert "sex groups:" in s.config.dataset_summary
    job = s.approve(s.propose()[0].id)
    assert job.payload["dataset"] == ref.to_dict()  # the worker reads the data through the ref


def test_concurrent_proposals_are_refused(store, tmp_path):
    import os
    import socket
    import threading

    from nas_core.designers.heuristic import HeuristicDesigner

    entered, release = threading.Event(), threading.Event()

    class Slow(HeuristicDesigner):
        def propose(self, ctx):
            entered.set()
            release.wait(10)
            return super().propose(ctx)

    s = Session.create_run(store, config(), designer=Slow())
    db = store.path
    result = {}

    def other_tab():
        with Store.open(db) as st2:
            result["c"] = Session(st2, s.run_id, designer=Slow()).propose()

    t = threading.Thread(target=other_tab)
    t.start()
    assert entered.wait(10)
    with pytest.raises(SessionError, match="being made right now"):
        s.propose()
    release.set()
    t.join(10)
    assert len(result["c"]) == 1 and len(store.list_iterations(s.run_id)) == 1

    # another live process opened the next iteration and is still proposing
    s.reject(result["c"][0].id, "no")
    s.poll()
    store.start_iteration(s.run_id, actor=f"app [pid {os.getppid()}@{socket.gethostname()}]")
    with pytest.raises(SessionError, match="being proposed by another process"):
        Session(store, s.run_id).propose()
