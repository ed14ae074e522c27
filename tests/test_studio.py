"""The app's engine facade: a real (tiny) evaluation, then every export, checked against the trained model."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nas_core import studio
from nas_core.errors import UserError
from nas_core.worker import run_pending


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset):
    tmp = tmp_path_factory.mktemp("studio")
    mp = pytest.MonkeyPatch()
    mp.setenv("EQUINAS_DB", str(tmp / "s.db"))
    mp.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(tiny_dataset, name="export"))
    sess = studio.session(store, run_id)
    (cand,) = sess.propose("test")
    sess.approve(cand.id, "test")
    run_pending(store.path)
    cand = store.get_candidate(cand.id)
    assert cand.status == "done", cand.error
    yield store, sess, cand
    mp.undo()
    store.close()


def _model(store, sess, cand):
    return studio._trained_model(store, cand)[0]


def test_weights_are_written_by_the_evaluation_and_reload(trained):
    store, sess, cand = trained
    name, data = studio.export_candidate(store, cand.id, "weights")
    state = torch.load(io.BytesIO(data), weights_only=True)
    model = _model(store, sess, cand)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)


def test_onnx_and_torchscript_give_the_trained_models_outputs(trained):
    store, sess, cand = trained
    model = _model(store, sess, cand)
    x = torch.rand(3, *sess.config.input_shape)
    with torch.no_grad():
        want = model(x).numpy()
    _, onnx_bytes = studio.export_candidate(store, cand.id, "onnx")
    got = ort.InferenceSession(onnx_bytes).run(None, {ort.InferenceSession(onnx_bytes).get_inputs()[0].name:
                                                       x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    _, ts_bytes = studio.export_candidate(store, cand.id, "torchscript")
    scripted = torch.jit.load(io.BytesIO(ts_bytes))
    np.testing.assert_allclose(scripted(x).detach().numpy(), want, atol=1e-4)


def test_source_rebuilds_the_network_that_loads_the_weights(trained, tmp_path):
    store, sess, cand = trained
    _, src = studio.export_candidate(store, cand.id, "source")
    path = tmp_path / "exported_model.py"
    path.write_bytes(src)
    import importlib.util

    spec = importlib.util.spec_from_file_location("exported_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.build_model()
    _, weights = studio.export_candidate(store, cand.id, "weights")
    net.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    net.eval()
    x = torch.rand(2, *sess.config.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _model(store, sess, cand)(x))


def test_bundle_and_cards_and_csv(trained):
    store, sess, cand = trained
    with zipfile.ZipFile(io.BytesIO(studio.export_bundle(store, cand.id))) as zf:
        names = zf.namelist()
    assert any(n.endswith("_model_card.html") for n in names) and any(n.endswith(".onnx") for n in names)
    assert "NOT_EXPORTED.txt" not in names
    csv = studio.export_run_csv(store, sess.run_id).decode()
    assert csv.splitlines()[0].startswith("candidate_id,label") and len(csv.splitlines()) == 2


def test_unknown_format_is_refused(trained):
    store, _, cand = trained
    with pytest.raises(UserError, match="unknown export format"):
        studio.export_candidate(store, cand.id, "pickle")


def test_views_for_charts(trained):
    store, sess, cand = trained
    groups = studio.group_frame([cand])
    assert set(groups["attribute"]) >= {"sex", "age"} and groups["n"].sum() > 0
    front = studio.pareto_frame(store, sess.run_id, "params", "unfairness")
    assert front["on_front"].tolist() == [True]
    hv = studio.hypervolume_frame(store, [sess.run_id], ["accuracy", "params"])
    assert len(hv) == 1 and hv["hypervolume"].iloc[0] > 0
    overview = studio.runs_overview(store)
    assert overview.loc[0, "measured"] == 1


def test_build_config_reports_bad_fields():
    base = studio.default_config()
    with pytest.raises(UserError, match="not valid JSON"):
        studio.build_config(base, choices_json="{")
    with pytest.raises(UserError):
        studio.build_config(base, train={"lr": -1.0})
    cfg = studio.build_config(base, choices_json='{"max_blocks": 4}', env={"threads": 1})
    assert cfg.choices.max_blocks == 4 and cfg.env.threads == 1


def test_column_mapping_checks_age_bins():
    with pytest.raises(UserError, match="increasing"):
        studio.column_mapping(age_bins="65,30")
    with pytest.raises(UserError, match="numbers"):
        studio.column_mapping(age_bins="thirty")


def test_choices_editor_text_round_trips():
    import json

    from nas_core.space import Choices

    text = studio.choices_json(Choices.default())
    assert Choices.from_dict(json.loads(text)) == Choices.default()
    assert '"kernel": [3, 5, 7]' in text


def test_exports_state_the_preprocessing_and_class_map(trained, tmp_path):
    from nas_core.evaluator import EvalRequest, InputTransform, load_prepared

    store, sess, cand = trained
    _, src = studio.export_candidate(store, cand.id, "source")
    path = tmp_path / "pre_model.py"
    path.write_bytes(src)
    import importlib.util

    spec = importlib.util.spec_from_file_location("pre_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = cand.metrics.class_names or tuple(n for n, _ in cand.metrics.per_class_recall)
    assert mod.CLASS_NAMES == tuple(names) and mod.IMAGE_SIZE == sess.config.train.image_size
    assert "Centre-crop" in mod.__doc__ and f"0 = {names[0]}" in mod.__doc__
    # The module's preprocess() gives exactly the tensor the app trained and measured on.
    job = store.list_jobs(candidate_id=cand.id)[-1]
    prepared = load_prepared(EvalRequest.from_dict(job.payload))
    images = prepared.images[:4]
    want = InputTransform.for_data(prepared, torch.device("cpu"))(images)
    torch.testing.assert_close(mod.preprocess(images), want, atol=1e-5, rtol=1e-5)
    _, card = studio.export_candidate(store, cand.id, "card_md")
    text = card.decode()
    assert "## Input preprocessing" in text and "Output index" in text
    assert f"0 = {names[0]}" in text and "std (" in text


def test_upload_csv_columns_reads_the_headers_inside_a_zip_for_the_mapping_selects():
    def zipped(files: dict[str, str]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in files.items():
                zf.writestr(name, text)
        return buf.getvalue()

    # Wrapped in one folder (as zipping a folder does): the CSVs of that folder, not deeper ones.
    data = zipped({"clinic/cases.csv": "picture,finding,hospital\np1.jpg,benign,north\n",
                   "clinic/images/p1.jpg": "x", "clinic/images/old.csv": "a,b\n",
                   "__MACOSX/clinic/._cases.csv": "junk"})
    assert studio.upload_csv_columns(data) == {"cases.csv": ["picture", "finding", "hospital"]}
    flat = zipped({"labels.csv": "image,label\n", "meta.csv": "image,sex\n", "a.jpg": "x"})
    assert studio.upload_csv_columns(flat) == {"labels.csv": ["image", "label"], "meta.csv": ["image", "sex"]}
    assert studio.upload_csv_columns(b"not a zip") == {}
