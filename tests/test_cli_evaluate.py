"""``python -m nas_core evaluate``: JSON and text output on the tiny data set, and bad input messages."""

import dataclasses
import json

import pytest
import torch

from nas_core.cli import main
from nas_core.records import FairnessReport, HardwareMetrics, Metrics

SPEC = {
    "stem": {"out_channels": 8, "kernel": 3, "stride": 1},
    "blocks": [{"type": "dwsep", "out_channels": 16, "kernel": 3, "stride": 2, "pool": "max"},
               {"type": "conv", "out_channels": 16, "kernel": 3, "stride": 2}],
    "head": {"hidden": 0, "dropout": 0.0},
}


@pytest.fixture(scope="module")
def common(tiny_dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("eval_cache")
    return ["evaluate", "--dataset", str(tiny_dataset), "--epochs", "1", "--image-size", "32", "--device", "cpu",
            "--repeats", "2", "--bootstrap", "20", "--threads", "1", "--cache-dir", str(cache)]


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    return path


def test_json_output_has_every_field(common, spec_file, tmp_path, capsys):
    weights = tmp_path / "best.pt"
    assert main([*common, "--arch", str(spec_file), "--json", "--weights-out", str(weights)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {f.name for f in dataclasses.fields(Metrics)}
    assert set(out["fairness"]) == {f.name for f in dataclasses.fields(FairnessReport)}
    assert set(out["hardware"]) == {f.name for f in dataclasses.fields(HardwareMetrics)}
    m = Metrics.from_dict(out)
    assert m.epochs == 1 and m.hardware.params > 0 and m.hardware.latency_image_s > 0
    assert len(m.class_names) == 8 and len(m.per_class_recall) == 8
    assert {g.attribute for g in m.fairness.groups} == {"sex", "age"}
    assert m.fairness.unfairness is not None and m.fairness.n_bootstrap == 20
    state = torch.load(weights, weights_only=True)
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == (
        m.hardware.params)


def test_text_output_is_the_paper_form_plus_a_group_table(common, capsys):
    assert main([*common, "--arch", json.dumps(SPEC)]) == 0
    captured = capsys.readouterr()
    for part in ("Train Loss:", "Valid Acc:", "Unfairness Score:", "EODD:", "EOPP1:", "EOPP2:",
                 "Fairness Detail: [", "Latency:", "Throughput:", "Peak Memory:", "Parameters:"):
        assert part in captured.out
    assert "attribute" in captured.out and "female" in captured.out and "95% interval" in captured.out
    assert "epoch 1/1" in captured.err  # progress goes to stderr


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ('{"blocks": [{"type": "conv", "kernel": 4}]}', "kernel"),
        ('{"blocks": [{"type": "transformer"}]}', "conv"),  # names the allowed types
        ('{"stem": {"out_channels": 8}, "layers": []}', "layers"),
        ("baseline:vgg16", "resnet18"),  # unknown baseline lists the known ones
        ("no_such_spec.json", "neither a spec file nor baseline"),
    ],
)
def test_bad_arch_is_one_line_and_exit_2(common, arch, expected, capsys):
    assert main([*common, "--arch", arch]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err


def test_missing_dataset_says_so(capsys):
    assert main(["evaluate", "--dataset", "/no/such/folder", "--arch", "baseline:resnet18"]) == 2
    err = capsys.readouterr().err
    assert "/no/such/folder does not exist" in err and "make-default" in err


def test_bad_settings_are_user_errors(common, capsys):
    assert main([*common, "--arch", "baseline:resnet18", "--patience", "0"]) == 2
    assert "patience must be at least 1" in capsys.readouterr().err
