"""``python -m benchmarks``: --help prints the usage and unknown options are refused (they used to be
ignored, so ``python -m benchmarks fidelity --help`` started a long run)."""

from __future__ import annotations

from benchmarks.__main__ import main


def test_help_prints_usage_and_runs_nothing(capsys):
    assert main(["fidelity", "--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m benchmarks" in out and "bench_NAME --help" in out and "=====" not in out


def test_unknown_options_and_names_are_refused_with_what_to_do(capsys):
    assert main(["fidelity", "--specs", "3"]) == 2
    assert "python -m benchmarks.bench_NAME --help" in capsys.readouterr().err
    assert main(["nosuch"]) == 2
    assert "known: evaluator" in capsys.readouterr().err


def test_every_listed_benchmark_has_a_module_with_main():
    import importlib

    from benchmarks.__main__ import HAS_QUICK, ORDER

    assert HAS_QUICK <= set(ORDER)
    for name in ORDER:
        assert callable(importlib.import_module(f"benchmarks.bench_{name}").main), name


def test_idle_benchmark_refuses_an_unknown_page_before_starting_anything(capsys):
    import pytest

    from benchmarks import bench_idle

    with pytest.raises(SystemExit) as exc:
        bench_idle.main(["--pages", "search,nope"])
    assert exc.value.code == 2
    assert "unknown page(s) ['nope']: choose from search, jobs" in capsys.readouterr().err
    assert set(bench_idle.PAGES) == {"search", "jobs"}  # each with its path, drawn marker and reference commit


def test_app_loop_benchmark_says_when_the_data_set_is_missing(tmp_path):
    import pytest

    from benchmarks import bench_app_loop

    with pytest.raises(SystemExit, match="no ISIC 2019-layout data set at"):
        bench_app_loop.main(["--dataset", str(tmp_path / "nowhere")])


def test_the_wide_super_network_space_holds_the_default_ones_networks_unchanged():
    """``bench_supernet --space wide`` reuses cached truths of sub-networks the two spaces share: valid only
    if such a sub-network is the same network in both."""
    import random

    from benchmarks.bench_supernet import SPACES
    from nas_core.supernet.space import count_subnet_macs, sample_config, smallest, to_arch_spec

    default, wide = SPACES["default"](), SPACES["wide"]()
    rng = random.Random(0)
    for _ in range(50):
        cfg = sample_config(default, rng)
        assert to_arch_spec(cfg, wide) == to_arch_spec(cfg, default)
    assert count_subnet_macs(smallest(wide), wide, 8, 64) < count_subnet_macs(smallest(default), default, 8, 64) / 2
