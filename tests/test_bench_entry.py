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
