"""The training recipe's learning-rate schedules: stepped per batch over max_epochs, validated."""

import pytest
import torch

from nas_core.evaluator import ONECYCLE_PEAK, make_scheduler, train_model
from nas_core.models import build_model
from nas_core.settings import SettingsError, TrainSettings
from nas_core.space import default_spec


def _lrs(schedule, steps=10, epochs=3):
    model = torch.nn.Linear(2, 2)
    s = TrainSettings(schedule=schedule, max_epochs=epochs, lr=1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = make_scheduler(opt, s, steps)
    seen = []
    for _ in range(steps * epochs):
        opt.step()
        if sched is not None:
            sched.step()
        seen.append(opt.param_groups[0]["lr"])
    return sched, seen


def test_schedules_shape_the_learning_rate():
    sched, lrs = _lrs("constant")
    assert sched is None and set(lrs) == {1e-3}
    _, lrs = _lrs("onecycle")
    assert max(lrs) == pytest.approx(1e-3 * ONECYCLE_PEAK, rel=0.05) and lrs[-1] < 1e-5
    assert lrs.index(max(lrs)) < len(lrs) // 2
    _, lrs = _lrs("cosine")
    assert lrs[0] < 1e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-9) and lrs == sorted(lrs, reverse=True)
    with pytest.raises(SettingsError, match="schedule"):
        TrainSettings(schedule="warm")


def test_onecycle_training_runs_to_its_last_step(tiny_prepared):
    torch.manual_seed(0)
    model = build_model(default_spec(), tuple(tiny_prepared.images.shape[1:]), len(tiny_prepared.class_names))
    s = TrainSettings(schedule="onecycle", max_epochs=2, patience=2, batch_size=32)
    result = train_model(model, tiny_prepared, s, torch.device("cpu"))
    assert result.epochs == 2 and result.val_loss > 0
