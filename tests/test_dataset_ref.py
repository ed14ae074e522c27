"""DatasetRef end to end: a registered generic CSV with renamed columns, an extra attribute and left-out
rows runs a search, and its attribute reaches every fairness metric, the Results views and the model card.

Also: the ref's JSON round trip and validation, the lazy upgrade of runs stored path-only by the
previous schema, and super-network jobs that carry the ref (found without loading the data).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest

from nas_core import studio
from nas_core.data.importer import import_dataset, load_registered
from nas_core.data.index import AttributeSpec, DataError
from nas_core.data.ref import DatasetRef, DatasetRefError, resolve
from nas_core.runconfig import RunConfig
from nas_core.session import Session
from nas_core.settings import Env, TrainSettings
from nas_core.store import SCHEMA_VERSION, Store
from nas_core.store import schema as store_schema
from tests.data.b2_fixtures import image, truncated_jpeg, write_csv

N = 290  # test split ~29: both hospitals keep >= 10 test images (the small-group rule)
FINDINGS = ("benign", "malignant", "other")
TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "32", "--device", "cpu", "--threads", "1"]


def make_clinic(root):
    """``cases.csv`` (picture, finding, sex, age, hospital) + images; one row without an image, one corrupt."""
    rows = []
    for i in range(N):
        name = f"p_{i:03d}.jpg"
        image(root / "images" / name, seed=i, size=(20, 20))
        rows.append([name, FINDINGS[i % 3], ("male", "female")[(i // 3) % 2], str(20 + (i * 7) % 60),
                     ("north", "south")[(i // 6) % 2]])
    rows.append(["p_missing.jpg", "benign", "male", "40", "north"])
    truncated_jpeg(root / "images" / "p_bad.jpg")
    rows.append(["p_bad.jpg", "other", "female", "50", "south"])
    write_csv(root / "cases.csv", ["picture", "finding", "sex", "age", "hospital"], rows)
    return root


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """(store path, data folder, cache dir) with the clinic data set imported as "clinic" the Data page's way."""
    base = tmp_path_factory.mktemp("clinic")
    root = make_clinic(base / "clinic_data")
    db = base / "clinic.db"
    mapping = studio.column_mapping(image="picture", label="finding", attributes=["hospital"], age_column="age")
    with Store.open(db) as store:
        import_dataset(root, store, name="clinic", mapping=mapping, image_size=16, allow_corrupt=True,
                       cache_dir=base / "cache", workers=1)
    return db, root, base / "cache"


@pytest.fixture
def env(clinic, tmp_path, monkeypatch):
    db, root, cache = clinic
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(cache))
    monkeypatch.setenv("EQUINAS_SUPERNET_DIR", str(tmp_path / "supernets"))
    monkeypatch.chdir(tmp_path)  # nothing may depend on the working folder
    return clinic


# ---------------------------------------------------------------------------------- the record


def _ref(**kw) -> DatasetRef:
    base = dict(root="/data/x", format="generic", content_hash="abc",
                attributes=(AttributeSpec("age", "age", "age", (40.0,), ("<40", ">40")),
                            AttributeSpec("hospital", "hospital")), excluded=("r1",), name="x")
    base.update(kw)
    return DatasetRef(**base)


def test_ref_round_trips_through_json_and_refuses_bad_input():
    ref = _ref()
    again = DatasetRef.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert again == ref and hash(again) == hash(ref)
    bad = [
        ("not an object", "must be an object"),
        ({**ref.to_dict(), "colour": 1}, r"unknown field\(s\) \['colour'\]"),
        ({k: v for k, v in ref.to_dict().items() if k != "content_hash"}, "'content_hash' is missing"),
        ({**ref.to_dict(), "format": "dicom"}, "format 'dicom' is unknown"),
        ({**ref.to_dict(), "excluded": "r1"}, "excluded must be a list"),
        ({**ref.to_dict(), "attributes": [{"name": "a", "column": "a", "kind": "colour"}]}, "kind 'colour'"),
        ({**ref.to_dict(), "attributes": [{"name": "age", "column": "age", "kind": "age", "bins": [60, 30],
                                           "labels": ["a", "b", "c"]}]}, "increase strictly"),
        ({**ref.to_dict(), "attributes": [{"name": "", "column": "a"}]}, "'name' must be a non-empty text"),
        ({**ref.to_dict(), "attributes": [{"name": "a", "column": "a"}, {"name": "a", "column": "b"}]},
         "appear twice"),
    ]
    for data, message in bad:
        with pytest.raises(DatasetRefError, match=message):
            DatasetRef.from_dict(data)
    with pytest.raises(DataError, match="neither a folder nor an imported data set.*none imported"):
        resolve(None, "/no/such/folder")


def test_a_registered_data_set_becomes_a_ref_with_its_mapping_attributes_and_left_out_rows(env):
    db, root, _ = env
    with Store.open(db) as store:
        record = store.find_dataset("clinic")
        ref = DatasetRef.from_registered(record)
        assert ref.name == "clinic" and ref.format == "generic" and ref.root == str(root.resolve())
        assert ref.mapping.image == "picture" and ref.mapping.label == "finding"
        assert ref.attribute_names == ("sex", "age", "hospital")
        assert set(ref.excluded) == {"p_missing.jpg", "p_bad.jpg"}
        assert ref.content_hash == record.content_hash
        index = ref.load_index()
        assert len(index) == N and "p_bad.jpg" not in index.ids
        assert set(index.attribute("hospital")) == {"north", "south"}
        assert index.ids == load_registered(record).ids
        # The folder path names the same data set (the CLI's --dataset PATH), and so does its name.
        assert resolve(store, str(root)) == ref == resolve(store, "clinic")
    # Unregistered, the same folder cannot be read without the mapping: the bug this record fixes.
    with pytest.raises(DataError, match="cannot tell which columns"):
        DatasetRef.from_path(root)


def test_a_plain_folder_gets_a_ref_by_detection(tiny_dataset):
    ref = DatasetRef.from_path(tiny_dataset)
    assert ref.format == "isic2019" and ref.attribute_names == ("sex", "age") and not ref.name
    assert len(ref.content_hash) == 64 and ref == DatasetRef.from_path(tiny_dataset)
    assert len(ref.load_index()) == 240


@pytest.mark.parametrize("kind", ["generic", "ham", "folder", "folder_no_csv", "isic"])
def test_every_format_reads_back_through_its_ref_exactly_as_imported(kind, tmp_path):
    from tests.data import b2_fixtures as fx

    root = tmp_path / kind
    mapping = None
    if kind == "generic":
        fx.make_generic(root)
        mapping = studio.column_mapping(image="file", label="diagnosis", attributes=["patient"], age_column="age")
    elif kind == "ham":
        fx.make_ham(root)
        mapping = studio.column_mapping(attributes=["localization"], age_column="age", age_bins="40")
    elif kind.startswith("folder"):
        fx.make_folder(root, with_csv=kind == "folder")
        mapping = studio.column_mapping(attributes=["skin"]) if kind == "folder" else None
    else:
        fx.make_isic(root)
    with Store.open(tmp_path / "s.db") as store:
        rec = import_dataset(root, store, name=kind, mapping=mapping, image_size=16, allow_corrupt=True,
                             cache_dir=tmp_path / "cache", workers=1)
        ref = DatasetRef.from_dict(json.loads(json.dumps(DatasetRef.from_registered(rec).to_dict())))
        index = ref.load_index()
        assert len(index) == rec.counts["images"] and list(index.attribute_names) == rec.config["attributes"]
        assert ref.attribute_names == index.attribute_names
        extra = {"generic": "patient", "ham": "localization", "folder": "skin"}.get(kind)
        if extra:
            assert extra in ref.attribute_names
        if kind == "ham":
            (age,) = [a for a in ref.attributes if a.name == "age"]
            assert age.bins == (40.0,) and set(index.attribute("age")) <= {"<40", ">40", "unknown"}


def test_create_run_the_setup_page_way_carries_the_ref(env):
    db, root, _ = env
    with Store.open(db) as store:
        # pages/setup.py: the selectbox holds a registered data set's name -> build_config -> create_run
        names = [value for _, value in studio.dataset_options(store)]
        assert "clinic" in names
        cfg = studio.build_config(studio.default_config(), name="app run", dataset="clinic", engine="heuristic",
                                  train={"image_size": 16, "max_epochs": 1})
        run_id = studio.create_run(store, cfg)
        sess = studio.session(store, run_id)
        ref = sess.config.dataset_ref
        assert ref is not None and ref.name == "clinic" and ref.attribute_names == ("sex", "age", "hospital")
        assert sess.config.n_classes == 3 and "hospital groups: north" in sess.config.dataset_summary
        run = store.get_run(run_id)
        assert run.dataset_id == store.find_dataset("clinic").id and run.dataset_hash == ref.content_hash
        kind, payload = sess.job_for(sess.propose()[0])
        assert kind == "evaluate" and payload["dataset"]["mapping"]["image"] == "picture"


@pytest.mark.slow
def test_search_from_the_cli_measures_the_extra_attribute_everywhere(env, capsys):
    from nas_core.cli import main

    db, root, _ = env
    code = main(["search", "--db", str(db), "--dataset", "clinic", "--engine", "heuristic", "--iterations", "1",
                 "--auto-approve", "--json", *TINY])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = json.loads(out.out)["run_id"]
    with Store.open(db) as store:
        (c,) = [c for c in store.list_candidates(run_id) if c.status == "done"]
        fr = c.metrics.fairness
        assert {g.group for g in fr.groups if g.attribute == "hospital"} == {"north", "south"}
        per_attr = {a.attribute: a for a in fr.attributes}
        assert set(per_attr) == {"sex", "age", "hospital"}
        hosp = per_attr["hospital"]
        assert None not in (hosp.unfairness, hosp.eodd, hosp.eopp1, hosp.eopp2)
        assert [(p.group_a, p.group_b) for p in fr.pairs if p.attribute == "hospital"] == [("north", "south")]
        # Overall Unfairness averages over every counted group of every attribute, hospital included.
        counted = [g for g in fr.groups if g.group != "unknown" and not g.small and g.accuracy is not None]
        assert any(g.attribute == "hospital" for g in counted)
        assert fr.unfairness == pytest.approx(
            sum(abs(g.accuracy - fr.overall_accuracy) for g in counted) / len(counted))
        # What the Results page reads.
        groups = studio.group_frame([c])
        assert set(groups[groups["attribute"] == "hospital"]["group"]) == {"north", "south"}
        attrs, pairs = studio.fairness_frames(c)
        assert "hospital" in set(attrs["attribute"]) and "north vs south" in set(pairs["pair"])
        # The model card.
        name, card = studio.export_candidate(store, c.id, "card_md")
        text = card.decode()
        assert "| hospital | north |" in text and "| hospital | south |" in text
        assert "| hospital | " in text.split("## Fairness", 1)[1]
        assert "clinic (generic; attributes: sex (sex); age (age, bins 30, 65); hospital (hospital)" in text
        # The worker read the data through the ref: the job payload carried it.
        (job,) = [j for j in store.list_jobs() if j.candidate_id == c.id]
        assert job.payload["dataset"]["name"] == "clinic" and "p_bad.jpg" in job.payload["dataset"]["excluded"]


# ---------------------------------------------------------------------------------- migration


def _v5_database(path, clinic_db):
    """A database at the previous schema version holding two path-only runs (as that version wrote them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    store_schema.migrate(conn, str(path), upto=SCHEMA_VERSION - 1)
    src = sqlite3.connect(clinic_db)
    src.row_factory = sqlite3.Row
    row = dict(src.execute("SELECT * FROM datasets WHERE name='clinic'").fetchone())
    src.close()
    conn.execute(f"INSERT INTO datasets ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    return conn, row


def test_runs_stored_path_only_by_the_previous_schema_get_their_ref_on_first_read(env, tiny_dataset, tmp_path):
    db, root, _ = env
    old = tmp_path / "old.db"
    conn, ds = _v5_database(old, db)
    now = time.time()
    path_only = RunConfig(name="old", dataset=str(tiny_dataset), n_classes=8, dataset_summary="old run",
                          train=TrainSettings(image_size=16, max_epochs=1), env=Env(repeats=1, warmup=0)).to_dict()
    del path_only["dataset_ref"]  # the previous version had no such field
    linked = {**path_only, "name": "old clinic", "dataset": str(root)}
    for name, cfg, dataset_id in (("old", path_only, None), ("old clinic", linked, ds["id"])):
        conn.execute("INSERT INTO runs (name, engine, dataset_id, dataset_ref, status, config_json, created_at, "
                     "updated_at) VALUES (?, 'heuristic', ?, ?, 'created', ?, ?, ?)",
                     (name, dataset_id, cfg["dataset"], json.dumps(cfg), now, now))
    conn.close()
    with Store.open(old) as store:
        assert store.schema_version == SCHEMA_VERSION
        plain, clinic_run = sorted(store.list_runs(), key=lambda r: r.id)
        assert plain.dataset_hash == "" and "dataset_ref" not in plain.config
        ref = Session(store, plain.id).config.dataset_ref
        assert ref == DatasetRef.from_path(tiny_dataset)
        assert store.get_run(plain.id).config["dataset_ref"] == ref.to_dict()  # written back once
        assert store.get_run(plain.id).dataset_hash == ref.content_hash
        # A run of a registered data set (no candidates yet) takes the data set's stored settings.
        sess = Session(store, clinic_run.id)
        assert sess.config.dataset_ref.name == "clinic"
        assert sess.config.dataset_ref.attribute_names == ("sex", "age", "hospital")
        kind, payload = sess.job_for(sess.propose()[0])
        assert payload["dataset"] == sess.config.dataset_ref.to_dict()
        assert store.get_run(clinic_run.id).dataset_hash == store.find_dataset("clinic").content_hash


# ---------------------------------------------------------------------------------- super-network


@pytest.mark.slow
def test_supernet_jobs_carry_the_ref_and_a_subsample_trained_one_is_found_without_loading(env, monkeypatch):
    from nas_core.supernet import jobs
    from nas_core.supernet.checkpoint import CheckpointError
    from nas_core.supernet.space import SupernetSpaceConfig, smallest, to_arch_spec
    from nas_core.supernet.train import SupernetTrainSettings

    db, root, _ = env
    tiny = SupernetSpaceConfig.tiny()

    def no_loading(*a, **k):
        raise AssertionError("make_payload must not load the data set")

    loader = jobs.load_prepared
    with Store.open(db) as store:
        ref = resolve(store, "clinic")
        train = TrainSettings(image_size=16, seed=0, max_epochs=1, n_bootstrap=10)
        cfg = RunConfig(name="sn", dataset="clinic", dataset_ref=ref, engine="random", evaluation="supernet",
                        train=train, env=Env(repeats=1, warmup=0))
        spec = to_arch_spec(smallest(tiny), tiny)
        monkeypatch.setattr(jobs, "load_prepared", no_loading)
        with pytest.raises(CheckpointError, match="no super-network is trained for data set clinic at 16 px"):
            jobs.make_payload(cfg, spec, store=store)  # approving before one is trained: told at once
        monkeypatch.setattr(jobs, "load_prepared", loader)
        # What the Setup page queues: the run's data set as a ref, trained on a subsample.
        req = jobs.TrainRequest(dataset=ref, train=dataclasses.replace(train, subsample=150), space=tiny,
                                settings=SupernetTrainSettings(max_epochs=1, batch_size=32, n_random=1,
                                                               calib_batches=1))
        payload = jobs.TrainRequest.from_dict(json.loads(json.dumps(req.to_dict())))
        assert payload.dataset == ref
        outcome = jobs.run_training(payload, store=store)
        assert jobs.read_trained_on(outcome.checkpoint).subsample == 150

        monkeypatch.setattr(jobs, "load_prepared", no_loading)
        measure = jobs.make_payload(cfg, spec, store=store)
        assert measure["dataset"] == ref.to_dict() and measure["train"]["subsample"] == 150
        assert measure["checkpoint"] == str(outcome.checkpoint)
        # Another data set's super-network is neither found nor accepted, still without loading.
        other = dataclasses.replace(ref, content_hash="f" * 64, name="other")
        assert jobs.find_for_ref(other, 16, 0, store=store) is None
        with pytest.raises(CheckpointError, match="trained on another data set"):
            jobs.make_payload(cfg.replace(dataset_ref=other), spec, checkpoint=outcome.checkpoint)
        monkeypatch.setattr(jobs, "load_prepared", loader)
        metrics = jobs.measure(measure).record
        assert metrics.estimate
        assert {g.attribute for g in metrics.fairness.groups} >= {"hospital"}


# ---------------------------------------------------------------------------------- the app


def _copy_db(src, dest):
    with sqlite3.connect(src) as a, sqlite3.connect(dest) as b:
        a.backup(b)
    return dest


def test_the_setup_page_creates_runs_and_super_network_trainings_that_carry_the_ref(env, tiny_dataset, tmp_path,
                                                                                     monkeypatch):
    from streamlit.testing.v1 import AppTest

    db, root, _ = env
    app_db = _copy_db(db, tmp_path / "app.db")
    monkeypatch.setenv("EQUINAS_DB", str(app_db))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("EQUINAS_FAST", "1")

    def setup_page() -> AppTest:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/setup.py").run()
        at.selectbox(key="cfg_dataset").set_value("clinic").run()
        return at

    at = setup_page()
    at.text_input(key="cfg_name").input("clinic from setup").run()
    at.button(key="create_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at = setup_page()
    at.radio(key="cfg_eval").set_value("supernet").run()
    at.button(key="sn_train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Store.open(app_db) as store:
        (run,) = [r for r in store.list_runs() if r.name == "clinic from setup"]
        ref = DatasetRef.from_dict(run.config["dataset_ref"])
        assert ref == DatasetRef.from_registered(store.find_dataset("clinic"))
        (job,) = [j for j in store.list_jobs(status="queued") if j.kind == "supernet_train"]
        assert job.payload["dataset"] == ref.to_dict()  # the data set itself, not its name


def test_a_checkpoint_names_the_data_set_it_was_trained_on(tmp_path):
    from nas_core.supernet import jobs

    ckpt = tmp_path / "supernet_x.pt"
    ref = _ref(root=str(tmp_path))
    assert jobs.read_trained_on(ckpt) is None
    jobs.write_trained_on(ckpt, jobs.TrainedOn(dataset=ref, image_size=16, seed=3, subsample=40))
    info = jobs.read_trained_on(ckpt)
    assert info == jobs.TrainedOn(dataset=ref, image_size=16, seed=3, subsample=40)
    assert jobs.dataset_for_checkpoint(ckpt) == ref and jobs.dataset_for_checkpoint(ckpt, "/other") == "/other"
    jobs.ref_path(ckpt).write_text("{broken")
    assert jobs.read_trained_on(ckpt) is None  # unreadable: ignored, the checkpoint is matched the old way
