"""JobResult and Progress: the one typed path from a handler to the job row and the progress bar."""

from __future__ import annotations

import json
import pickle

import pytest

from nas_core.jobresult import JobResult, MalformedResult, Progress
from nas_core.store import Store
from tests.store.helpers import make_metrics, proposals


def test_progress_reads_every_old_report_shape_as_one_bar():
    assert Progress.from_report({"epoch": 3, "max_epochs": 10, "train_loss": 0.4}) == Progress(
        0.3, "epoch 3/10", {"epoch": 3, "max_epochs": 10, "train_loss": 0.4})
    # the super-network measurement sent only a fraction and a stage: it still moves and says what it does
    p = Progress.from_report({"stage": "measuring", "fraction": 0.1})
    assert p.fraction == 0.1 and p.message == "measuring"
    assert Progress.from_report(0.25) == Progress(0.25, "", {})  # LINAS's on_progress(float)
    assert Progress.from_report({"done": 5, "total": 20}).fraction == 0.25  # import / cache build
    assert Progress.from_report({"epoch": 1}).fraction is None
    assert Progress(1.7).fraction == 1.0 and Progress(-0.2).fraction == 0.0
    with pytest.raises(ValueError, match="NaN"):
        Progress(float("nan"))
    with pytest.raises(TypeError, match="Progress, a fraction or a mapping"):
        Progress.from_report("half")


def test_progress_round_trips_through_its_stored_form_and_merges():
    p = Progress(0.5, "epoch 1/2", {"epoch": 1, "max_epochs": 2})
    assert p.to_dict() == {"epoch": 1, "max_epochs": 2, "fraction": 0.5, "message": "epoch 1/2"}
    assert Progress.from_report(json.loads(json.dumps(p.to_dict()))) == p
    later = p.merged(Progress(None, "", {"val_loss": 0.3}))
    assert later.fraction == 0.5 and later.message == "epoch 1/2" and later.detail["val_loss"] == 0.3


def test_job_result_shapes_and_old_rows():
    m = make_metrics(acc=0.8)
    assert JobResult.from_dict(JobResult.metrics(m).to_dict()) == JobResult.metrics(m)
    assert JobResult.metrics(m).to_dict(candidate_id=7) == {"kind": "metrics", "candidate_id": 7}
    assert JobResult.from_dict({"kind": "metrics", "candidate_id": 7}) == JobResult("metrics", None, 7)
    assert JobResult.from_dict(JobResult.data({"pid": 3}).to_dict()) == JobResult.data({"pid": 3})
    # rows written before JobResult: a bare Metrics.to_dict() is metrics, any other dict is data
    assert JobResult.from_dict(m.to_dict()) == JobResult.metrics(m)
    assert JobResult.from_dict({"checkpoint": "/x.pt"}) == JobResult.data({"checkpoint": "/x.pt"})
    assert JobResult.of(m) == JobResult.metrics(m) and JobResult.of(None) == JobResult.data({})
    assert pickle.loads(pickle.dumps(JobResult.metrics(m))) == JobResult.metrics(m)  # crosses to Ray workers
    with pytest.raises(MalformedResult, match="malformed metrics"):
        JobResult.from_dict({"fairness": {}, "hardware": {}, "test_acc": 0.5})
    with pytest.raises(MalformedResult, match="must return a JobResult"):
        JobResult.of([1, 2])
    with pytest.raises(ValueError, match="kind must be one of"):
        JobResult("weights", {})
    with pytest.raises(TypeError, match="holds a Metrics record"):
        JobResult("metrics", {"test_acc": 1.0})


def test_store_reads_a_job_row_written_before_job_result(tmp_path):
    store = Store.open(tmp_path / "s.db")
    run = store.create_run("r", "random", "d", {})
    c = store.add_candidate(run.id, 1, proposals(1)[0])
    job = store.approve(c.id, "ann", "evaluate", {})
    store.claim_job("w")
    store.record_result(job.id, JobResult.metrics(make_metrics(acc=0.6)), worker_id="w")
    m = make_metrics(acc=0.9)
    # an old database: the whole metrics dict in result_json
    store.conn.execute("UPDATE jobs SET result_json=? WHERE id=?", (json.dumps(m.to_dict()), job.id))
    old = store.get_job(job.id)
    assert old.outcome == JobResult.metrics(m) and old.result["test_acc"] == 0.9
    store.close()


def test_a_designers_inner_search_reports_progress_through_the_session(tmp_path):
    from nas_core.designers.heuristic import HeuristicDesigner
    from nas_core.runconfig import RunConfig
    from nas_core.session import Session
    from nas_core.settings import TrainSettings
    from nas_core.space import Choices

    class InnerSearch(HeuristicDesigner):  # like LinasDesigner: a long inner search behind on_progress
        on_progress = None

        def propose(self, ctx):
            for f in (0.25, 1.0):
                if self.on_progress is not None:
                    self.on_progress(f)
            return super().propose(ctx)

    store = Store.open(tmp_path / "s.db")
    cfg = RunConfig(name="t", dataset="/nowhere", n_classes=3, dataset_summary="tiny test data",
                    choices=Choices.from_dict({"max_blocks": 5, "max_params": 2_000_000}),
                    train=TrainSettings(image_size=32, max_epochs=1))
    s = Session.create_run(store, cfg, designer=InnerSearch())
    seen: list[Progress] = []
    assert s.propose(progress=seen.append)
    assert [p.fraction for p in seen] == [0.25, 1.0]
    assert "inner search 25%" in seen[0].message and seen[0].detail == {"stage": "inner search", "iteration": 1}
    store.close()


def test_import_and_cache_steps_read_as_progress():
    from nas_core import studio

    p = studio.import_progress("cache", 5, 20)
    assert p.fraction == 0.25 and p.message == "building the image cache: 5/20"
    assert studio.import_progress("check", 0, 0).fraction is None  # nothing to count yet: no made-up number
