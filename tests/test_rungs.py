"""Successive halving: the ladder, Optuna's promote/stop decisions, forced promote/stop, every rung stored,
the migration, re-measuring with another seed, the CLI, and one candidate through two rungs on tiny data."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from nas_core.cli import main
from nas_core.records import Proposal
from nas_core.runconfig import RunConfig
from nas_core.rungs import (
    HalvingSettings,
    Rung,
    RungError,
    candidate_rungs,
    decide,
    ladder,
    parse_ladder,
    promote,
    queue_remeasure,
    seed_spread,
    stop,
)
from nas_core.session import Session
from nas_core.settings import Env, SettingsError, TrainSettings
from nas_core.space import ArchSpec, Choices, default_spec
from nas_core.store import Store
from nas_core.store import rungs as rows
from nas_core.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from nas_core.worker import Worker
from tests.factories import make_metrics

FAKE = {"evaluate_rung": "tests.test_rungs:fake_rung", "remeasure": "tests.test_rungs:fake_remeasure"}


def _acc_of(payload) -> float:
    """The fake's accuracy: the stem width in hundredths (so each test picks its own scores)."""
    return payload["arch"]["stem"]["out_channels"] / 100


def fake_rung(payload, progress, should_stop):
    """A rung handler without training: the score comes from the spec; the final rung adds 0.1."""
    acc = _acc_of(payload)
    if payload["halving"]["final"]:
        return make_metrics(acc=min(acc + 0.1, 1.0)).to_dict()
    m = dataclasses.replace(make_metrics(acc=acc), val_loss=2.0 - acc)  # either score ranks like acc
    return {"rung_metrics": m.to_dict(), "cpu_s": 0.01, "seconds": 0.01}


def slow_final_rung(payload, progress, should_stop):
    """Like fake_rung, but the full-fidelity rung runs until it is asked to stop."""
    import time

    from nas_core.jobs import JobStopped

    if not payload["halving"]["final"]:
        return fake_rung(payload, progress, should_stop)
    for _ in range(3000):
        progress({"epoch": 1, "max_epochs": 2})
        if should_stop():
            raise JobStopped("stopped")
        time.sleep(0.01)
    raise AssertionError("never asked to stop")


def fake_remeasure(payload, progress, should_stop):
    seed = payload["remeasure"]["init_seed"]
    acc = _acc_of(payload) + 0.1 + 0.01 * (seed % 3)
    return {"remeasure_metrics": make_metrics(acc=acc, unfairness=0.04).to_dict(), "init_seed": seed}


def spec(width: int) -> ArchSpec:
    d = default_spec().to_dict()
    d["stem"]["out_channels"] = width
    return ArchSpec.from_dict(d)


def config(**kw) -> RunConfig:
    base = dict(name="sh", dataset="/nowhere", n_classes=3, dataset_summary="tiny",
                choices=Choices.from_dict({"max_blocks": 5, "max_params": 5_000_000}),
                train=TrainSettings(image_size=64, max_epochs=4), env=Env(repeats=2, warmup=1))
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture()
def store(tmp_path):
    s = Store.open(tmp_path / "sh.db")
    yield s
    s.close()


def add(store, sess, width):
    c = store.add_candidate(sess.run_id, 1, Proposal(spec(width), "heuristic"))
    sess.approve(c.id, "ann")
    return c.id


def drain(store, handlers=FAKE):
    return Worker(store.path, poll_s=0.01, heartbeat_s=0.1, stale_after_s=5, handlers=handlers).run(once=True)


# ---------------------------------------------------------------------------------------------- the ladder


def test_default_ladder_is_one_cheap_rung_then_the_runs_training():
    full = TrainSettings()  # 10 epochs at 64 px
    steps = ladder(HalvingSettings(), full)
    assert [s.final for s in steps] == [False, True]
    assert (steps[0].train.max_epochs, steps[0].train.image_size) == (5, 32)  # half the epochs, half the pixels
    assert steps[0].train.patience == 5  # no early stop below full fidelity
    assert steps[0].train.seed == full.seed  # same seed: the same split
    assert steps[1].train == full
    assert steps[0].label == "rung 1/2 (preliminary): 5 epochs at 32 px"
    assert steps[1].label == "rung 2/2 (full fidelity): up to 10 epochs at 64 px"


def test_ladder_drops_rungs_that_are_not_cheaper_and_caps_the_size():
    small = TrainSettings(image_size=32, max_epochs=5)
    assert len(ladder(HalvingSettings(), small)) == 1  # 5 epochs at 32 px is the full training already
    short = ladder(HalvingSettings(), TrainSettings(image_size=64, max_epochs=3))
    assert [(s.train.max_epochs, s.train.image_size) for s in short] == [(3, 32), (3, 64)]  # cheaper by pixels
    two = ladder(HalvingSettings(rungs=(Rung(1, 128), Rung(2, 48), Rung(1, 16))), TrainSettings(image_size=64))
    # 1@128 is capped to 64 px (still cheaper: fewer epochs); 1@16 is cheaper than 2@48 so it is dropped
    assert [(s.train.max_epochs, s.train.image_size) for s in two] == [(1, 64), (2, 48), (10, 64)]
    assert len(ladder(HalvingSettings(enabled=False), TrainSettings())) == 1


def test_ladder_setting_round_trips_and_rejects_bad_values():
    cfg = config(halving=HalvingSettings(rungs=(Rung(1, 32, 200),), reduction_factor=2, metric="val_acc"))
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.halving == cfg.halving
    assert RunConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "halving"}).halving == HalvingSettings()
    assert parse_ladder("1@32, 2@48/500") == (Rung(1, 32), Rung(2, 48, 500))
    assert parse_ladder("none") == ()
    with pytest.raises(SettingsError, match="EPOCHS@PIXELS"):
        parse_ladder("one@32")
    with pytest.raises(SettingsError, match="reduction_factor"):
        HalvingSettings(reduction_factor=1)
    with pytest.raises(SettingsError, match="at least 1 epoch"):
        RunConfig.from_dict({**cfg.to_dict(), "halving": {"rungs": [{"epochs": 0}]}})
    with pytest.raises(SettingsError, match="unknown field"):
        HalvingSettings.from_dict({"rungz": []})
    with pytest.raises(SettingsError, match="val_loss or val_acc"):
        HalvingSettings(metric="test_acc")  # the test split never selects


# ---------------------------------------------------------------------------------------------- decisions


def _rows_with(store, scores, eta=3):
    run = store.create_run("r", "heuristic", None, config().to_dict())
    out = []
    for i, s in enumerate(scores):
        c = store.add_candidate(run.id, 1, Proposal(spec(10 + i), "heuristic"))
        out.append(rows.add_rung(store, run_id=run.id, candidate_id=c.id, rung=0, final=False, fidelity="r1",
                                 settings={}, job_id=None, score=s, val_acc=s, test_acc=s, unfairness=0.1,
                                 metrics={}))
    return [decide(store, r, eta) for r in out]


def test_pruner_keeps_the_best_third_in_order_of_arrival(store):
    # ASHA with eta=3: the first always continues; then the best max(1, n // 3) of the n so far.
    assert _rows_with(store, [0.5, 0.4, 0.6, 0.55, 0.3, 0.58]) == [True, False, True, False, False, True]


def test_pruner_decisions_are_deterministic_and_respect_the_factor(store):
    scores = [0.5, 0.52, 0.49, 0.7, 0.51, 0.2, 0.6, 0.65]
    first = _rows_with(store, scores, eta=2)
    again = [decide(store, r, 2) for r in rows.list_rungs(store, run_id=store.list_runs()[-1].id)]
    assert first == again
    # eta=2: of n so far the best max(1, n // 2) continue: 0.51 is 3rd of 5 (stops), 0.65 2nd of 8 (continues)
    assert first == [True, True, False, True, False, False, True, True]


def test_the_score_is_validation_accuracy_by_default_and_ties_all_continue():
    from nas_core.rungs import asha_decisions, rung_score

    assert HalvingSettings().metric == "val_acc"
    assert rung_score({"val_loss": 0.5, "val_acc": 0.7}, "val_loss") == -0.5
    assert rung_score({"val_loss": 0.5, "val_acc": 0.7}, "val_acc") == 0.7
    assert rung_score({"val_loss": None}, "val_loss") is None
    # Three candidates all predicting the majority class: equal accuracy, so all would tie and go on ...
    assert asha_decisions([(1, 0, 0.6), (2, 0, 0.6), (3, 0, 0.6)]) == [True, True, True]
    # ... while their losses would separate them (metric="val_loss").
    losses = [rung_score({"val_loss": v}, "val_loss") for v in (1.2, 1.3, 1.1)]
    assert asha_decisions([(1, 0, losses[0]), (2, 0, losses[1]), (3, 0, losses[2])]) == [True, False, True]


# ---------------------------------------------------------------------------------------------- through the worker


def test_candidates_climb_the_ladder_and_every_rung_is_stored(store):
    sess = Session.create_run(store, config())
    a = add(store, sess, 50)  # first: always continues
    b = add(store, sess, 40)  # worse than a: stops
    c = add(store, sess, 60)  # best: continues
    job = store.list_jobs(candidate_id=a)[0]
    assert job.kind == "evaluate_rung" and job.payload["halving"]["rung"] == 0 and job.payload["train"]["max_epochs"] == 4
    assert job.payload["train"]["image_size"] == 32  # the default rung: 5 epochs at 32 px, capped at the run's 4
    assert job.payload["weights_out"] is None and job.payload["halving"]["full"]["train"]["max_epochs"] == 4
    drain(store)
    assert not sess.poll().in_flight
    by = candidate_rungs(store, sess.run_id)
    assert by[a].state == "final" and not by[a].preliminary and store.get_candidate(a).metrics is not None
    assert by[b].state == "stopped" and by[b].preliminary and by[b].decided_by == "pruner"
    assert store.get_candidate(b).status == "done" and store.get_candidate(b).metrics is None
    assert by[c].state == "final"
    assert by[b].rank == 3 and by[b].ranked == 3 and by[b].test_acc == pytest.approx(0.4)
    hist = rows.list_rungs(store, run_id=sess.run_id)
    assert sorted((r.candidate_id, r.rung, r.decision) for r in hist) == sorted(
        [(a, 0, "promoted"), (a, 1, "final"), (b, 0, "stopped"), (c, 0, "promoted"), (c, 1, "final")])
    assert all(r.fidelity.startswith(f"rung {r.rung + 1}/2") for r in hist)
    assert "PRELIMINARY" in by[b].to_text() and "rank 3 of 3" in by[b].to_text()
    # Promotions queue behind the waiting rungs: every preliminary result came before any full training.
    started = sorted(store.list_jobs(run_id=sess.run_id), key=lambda j: (j.started_at, j.id))
    assert [j.payload["halving"]["rung"] for j in started] == [0, 0, 0, 1, 1]
    # Rankings only see full-fidelity results: b (stopped) is not in them.
    assert [x.id for x in sess.ranked()] == [c, a]


def test_forced_promote_and_stop(store):
    sess = Session.create_run(store, config())
    a, b = add(store, sess, 50), add(store, sess, 40)
    drain(store)
    assert candidate_rungs(store, sess.run_id)[b].can_promote
    job = promote(store, b, actor="ann")
    assert job.kind == "evaluate_rung" and job.payload["halving"]["final"] and store.get_candidate(b).status == "queued"
    assert rows.list_rungs(store, candidate_id=b)[0].decided_by == "user:ann"
    with pytest.raises(RungError, match="already queued"):
        promote(store, b)
    # Stop it again before it runs: the job is cancelled, the preliminary result stays, it is done.
    stop(store, b, actor="bob")
    assert store.get_candidate(b).status == "done"
    assert rows.list_rungs(store, candidate_id=b)[0].decision == "stopped"
    with pytest.raises(RungError, match="already stopped"):
        stop(store, b)
    with pytest.raises(RungError, match="full fidelity"):
        promote(store, a)
    with pytest.raises(RungError, match="full fidelity"):
        stop(store, a)
    # Promote once more and let it run: it reaches full fidelity.
    promote(store, b)
    drain(store)
    assert candidate_rungs(store, sess.run_id)[b].state == "final"
    assert store.get_candidate(b).metrics.test_acc == pytest.approx(0.5)


def test_stopping_a_running_rung_keeps_the_preliminary_result(store):
    import threading

    sess = Session.create_run(store, config())
    a = add(store, sess, 50)
    w = Worker(store.path, poll_s=0.01, heartbeat_s=0.05, stale_after_s=5,
               handlers={"evaluate_rung": "tests.test_rungs:slow_final_rung"})
    t = threading.Thread(target=w.run, kwargs={"once": True})
    t.start()
    try:
        for _ in range(500):
            jobs = store.list_jobs(candidate_id=a, status="running")
            if jobs and jobs[0].payload["halving"]["final"]:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the full-fidelity rung never started")
        assert stop(store, a, actor="ann").status == "running"  # flagged; the worker stops it
    finally:
        t.join(timeout=30)
    assert store.get_candidate(a).status == "done" and store.get_candidate(a).metrics is None
    (row,) = rows.list_rungs(store, candidate_id=a)
    assert (row.decision, row.decided_by) == ("stopped", "user:ann")
    view = candidate_rungs(store, sess.run_id)[a]
    assert view.state == "stopped" and view.preliminary and view.can_promote


def test_remeasure_with_another_seed_keeps_the_spread(store):
    sess = Session.create_run(store, config())
    a = add(store, sess, 50)
    drain(store)
    assert seed_spread(store, a).n == 1 and "1 seed only" in seed_spread(store, a).to_text()
    j1 = queue_remeasure(store, a)
    assert j1.payload["remeasure"]["init_seed"] == 1 and j1.payload["train"]["seed"] == 0
    with pytest.raises(RungError, match="used"):
        queue_remeasure(store, a, seed=1)
    assert queue_remeasure(store, a).payload["remeasure"]["init_seed"] == 2
    assert seed_spread(store, a).pending == 2
    before = store.get_candidate(a).metrics
    drain(store)
    sp = seed_spread(store, a)
    assert sp.seeds == (0, 1, 2) and sp.n == 3 and sp.pending == 0
    assert sp.test_acc[1:] == pytest.approx((0.61, 0.62))
    assert sp.acc_sd == pytest.approx(0.01) and "3 initialisation seeds" in sp.to_text()
    assert store.get_candidate(a).metrics == before  # the candidate's own result is untouched
    b = add(store, sess, 40)
    drain(store)
    with pytest.raises(RungError, match="no full-fidelity"):
        queue_remeasure(store, b)  # stopped at its preliminary rung


def test_without_a_cheaper_rung_candidates_train_at_full_fidelity_once(store):
    sess = Session.create_run(store, config(train=TrainSettings(image_size=32, max_epochs=1)))
    c = store.add_candidate(sess.run_id, 1, Proposal(spec(30), "heuristic"))
    assert sess.approve(c.id).kind == "evaluate"


# ---------------------------------------------------------------------------------------------- store


def test_migration_5_is_additive_on_a_version_4_database(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), upto=4)
    conn.execute("INSERT INTO runs (name, engine, created_at, updated_at) VALUES ('old', 'random', 0, 0)")
    conn.close()
    s = Store.open(path)
    assert s.schema_version == SCHEMA_VERSION >= 5 and [m[0] for m in MIGRATIONS][4] == 5
    assert s.list_runs()[0].name == "old" and rows.list_rungs(s, run_id=1) == []
    s.close()


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_rungs_promote_stop_remeasure_seeds(store, capsys, monkeypatch):
    import nas_core.jobs as jobs

    for k, v in FAKE.items():
        monkeypatch.setitem(jobs.HANDLERS, k, v)
    sess = Session.create_run(store, config())
    a, b = add(store, sess, 50), add(store, sess, 40)
    drain(store)
    db = str(store.path)
    capsys.readouterr()
    assert main(["rungs", "--db", db, "--run", str(sess.run_id)]) == 0
    out = capsys.readouterr().out
    assert f"#{b} rung 1/2 stopped (pruner): PRELIMINARY" in out and f"#{a} rung 2/2: final (up to 4 epochs at 64 px)" in out
    assert main(["promote", "--db", db, str(b)]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["stop", "--db", db, str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert main(["stop", "--db", db, str(b)]) == 2
    assert "already stopped" in capsys.readouterr().err
    assert main(["remeasure", "--db", db, str(a), "--seed", "7", "--wait"]) == 0
    assert "seed 7" in capsys.readouterr().out
    assert main(["seeds", "--db", db, str(a), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"] == [0, 7]
    assert main(["remeasure", "--db", db, str(b)]) == 2
    assert "no full-fidelity result" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- real training


def test_worker_trains_a_candidate_through_two_rungs_on_tiny_data(tmp_path, tiny_dataset):
    store = Store.open(tmp_path / "real.db")
    cfg = RunConfig(name="tiny", dataset=str(tiny_dataset),
                    choices=Choices.from_dict({"max_blocks": 3, "max_params": 500_000}),
                    train=TrainSettings(image_size=32, max_epochs=2, patience=1, batch_size=32, n_bootstrap=10),
                    env=Env(repeats=2, warmup=1, threads=1),
                    halving=HalvingSettings(rungs=(Rung(epochs=1, image_size=16),)))
    sess = Session.create_run(store, cfg)
    c = sess.propose("t")[0]
    sess.approve(c.id, "t")
    drain(store, handlers={})
    hist = rows.list_rungs(store, candidate_id=c.id)
    assert [(r.rung, r.final, r.decision) for r in hist] == [(0, False, "promoted"), (1, True, "final")]
    assert hist[0].settings["image_size"] == 16 and hist[0].settings["max_epochs"] == 1
    assert hist[0].metrics["epochs"] == 1 and 0.0 <= hist[0].test_acc <= 1.0 and hist[0].cpu_s > 0
    m = store.get_candidate(c.id).metrics
    assert m is not None and m.test_acc == pytest.approx(hist[1].test_acc) and m.hardware.latency_image_s
    assert store.get_candidate(c.id).status == "done" and not sess.poll().in_flight
    first_job = store.list_jobs(candidate_id=c.id)[0]
    assert first_job.progress["fidelity"] == hist[0].fidelity and first_job.progress["preliminary"] is True
    store.close()


def test_the_first_rung_is_an_estimate_of_the_fidelity_benchmark():
    from nas_core.rungs import fidelity_estimates

    (est,) = fidelity_estimates()
    rung = est.settings(TrainSettings())
    assert (rung.max_epochs, rung.image_size, est.train_fraction) == (5, 32, 1.0)  # the default ladder's rung
    # other settings get the same shares of their epochs and pixels (the fidelity quick form: 5 epochs at 32 px)
    quick = est.settings(TrainSettings(image_size=32, max_epochs=5, patience=2))
    assert (quick.max_epochs, quick.image_size, quick.patience) == (3, 16, 3)
    assert est.settings(TrainSettings(image_size=8, max_epochs=1)) == TrainSettings(image_size=8, max_epochs=1)
    from nas_core.rungs import Rung, scaled_default_rung

    assert scaled_default_rung(TrainSettings(image_size=32, max_epochs=5)) == Rung(3, 16)
    from benchmarks.bench_fidelity import all_estimates

    assert est.name in [e.name for e in all_estimates()]


def test_search_cli_takes_the_ladder_and_runs_a_candidate_through_it(tmp_path, tiny_dataset, capsys):
    db = str(tmp_path / "cli.db")
    base = ["search", "--db", db, "--dataset", str(tiny_dataset), "--engine", "heuristic", "--iterations", "1",
            "--auto-approve", "--epochs", "2", "--image-size", "32", "--batch-size", "32", "--device", "cpu",
            "--threads", "1", "--json"]
    assert main([*base, "--rungs", "1@16", "--reduction-factor", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    with Store.open(db) as s:
        cfg = RunConfig.from_dict(s.get_run(report["run_id"]).config)
        assert cfg.halving == HalvingSettings(rungs=(Rung(1, 16),), reduction_factor=2)
        cid = report["best"]["id"]
        assert [(r.rung, r.decision) for r in rows.list_rungs(s, candidate_id=cid)] == [(0, "promoted"), (1, "final")]
    assert main([*base, "--rungs", "none", "--iterations", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    with Store.open(db) as s:
        assert not RunConfig.from_dict(s.get_run(report["run_id"]).config).halving.enabled
        assert [j.kind for j in s.list_jobs(run_id=report["run_id"])] == ["evaluate"]
    assert main([*base, "--rungs", "1x32"]) == 2
    assert "EPOCHS@PIXELS" in capsys.readouterr().err
