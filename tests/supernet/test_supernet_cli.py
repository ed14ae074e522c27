"""The ``supernet`` CLI: train, status, measure, and clear errors for bad input."""

import json

import pytest

from nas_core.cli import main
from nas_core.store import Store
from nas_core.supernet import jobs
from nas_core.supernet.registry import list_supernets, set_kendall


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path / "supernets"))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_status_measure(env, tiny_dataset, capsys):
    db = str(env / "x.db")
    args = ["supernet", "train", "--db", db, "--dataset", str(tiny_dataset), "--space", "tiny"]
    args += [
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "48",
        "--n-random",
        "1",
        "--threads",
        "1",
        "--json",
    ]
    assert main(args) == 0
    out = _json(capsys)
    assert out["complete"] and out["epoch"] == 1 and out["stopped_reason"] == "max epochs"
    assert out["checkpoint"].startswith(str(env / "supernets"))

    store = Store.open(db)
    rows = list_supernets(store)
    assert [r.status for r in rows] == ["trained"] and rows[0].path == out["checkpoint"]
    set_kendall(store, out["checkpoint"], 0.61, 8)
    store.close()

    assert main(["supernet", "status", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "trained" in text and "0.61 over 8 sub-networks" in text

    assert main(["supernet", "measure", "--db", db, "--config", "smallest", "--json"]) == 0
    res = _json(capsys)
    assert res["metrics"]["estimate"] is True and res["config"]["depths"] == [1, 1]
    # A spec works as well as a config; it must be a sub-network.
    spec = dict(res["spec"])
    spec["blocks"][0]["kernel"] = 9
    assert main(["supernet", "measure", "--db", db, "--config", json.dumps(spec)]) == 2
    assert "blocks[0].kernel = 9" in capsys.readouterr().err


def test_bad_input_is_a_one_line_error(env, tiny_dataset, capsys):
    db = str(env / "y.db")
    assert main(["supernet", "measure", "--db", db, "--config", "largest"]) == 2
    assert "no trained super-network is registered" in capsys.readouterr().err
    assert main(["supernet", "train", "--db", db, "--dataset", str(env / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["supernet", "train", "--db", db, "--dataset", str(tiny_dataset), "--space", "huge"]) == 2
    assert "--space 'huge'" in capsys.readouterr().err


def test_queue_puts_a_training_job_in_the_store(env, tiny_dataset, capsys):
    db = str(env / "q.db")
    assert main(["supernet", "train", "--db", db, "--dataset", str(tiny_dataset), "--queue", "--json"]) == 0
    job_id = _json(capsys)["job"]
    store = Store.open(db)
    job = store.get_job(job_id)
    store.close()
    assert job.kind == "supernet_train" and job.status == "queued"
    req = jobs.TrainRequest.from_dict(job.payload)
    assert req.dataset == str(tiny_dataset) and req.db == db
