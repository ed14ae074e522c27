"""The engine registry: the one list of search engines (designers) a run can use.

Owns :func:`register_engine` and :class:`EngineInfo`. Everything that names engines reads
them here: :class:`~nas_core.runconfig.RunConfig` validation, the CLI's ``--engine``
choices, the Setup page's labels (through :func:`nas_core.studio.engine_labels`), the
session's :func:`make_designer` and the contract tests (``tests/test_contracts.py`` runs
:class:`nas_core.testing.DesignerTestCase` over every registered engine).

Built in: ``llm``, ``heuristic``, ``random``, ``linas``, ``nsga2``. A plug-in registers its own
before runs are created::

    from nas_core.engines import register_engine

    register_engine("mine", "My designer", lambda config, **_: MyDesigner(seed=config.seed))

A factory takes the run's :class:`~nas_core.runconfig.RunConfig` and the keyword arguments
``api_key`` and ``on_call`` (the LLM designer's; others ignore them) and returns a fresh
:class:`~nas_core.designers.base.Designer`.

Decisions:
- One random designer. ``random`` is :class:`nas_core.linas.designers.RandomSearchDesigner`:
  the benchmark's :class:`~nas_core.linas.engines.RandomEngine` (uniform over the space's valid
  gene rows, never one already seen, numpy generator seeded with (seed, iteration)) on the run's
  space (the CNN Template, or the super-network's sub-networks). ``nas_core.designers.random.
  RandomDesigner`` is the same class, so random-search curves of the app and of
  ``benchmarks/bench_search.py`` come from the same draws.
- The heuristic and LLM factories import their designer when called: both check specs against
  built networks (:func:`nas_core.designers.validation.spec_problems`), which imports torch, and the
  registry is read by every run config, the CLI's ``--help`` and the Setup page. The LINAS, NSGA-II
  and random designers need only numpy at import (pymoo and scikit-learn are loaded by the search
  itself), so they are imported here.
- Two levels of "engine". This registry lists the *designers* a run of the app can use (with a
  store, a session, approvals). :data:`nas_core.linas.engines.ENGINES` lists the store-free search
  *algorithms* (``linas``, ``nsga2``, ``random``) that ``run_search``, ``bench-search`` and the
  benchmarks drive over any plug-in :class:`~nas_core.linas.SearchSpace`; they take a space, a
  history and an rng, not a run config, so they cannot be registered here. The three designers of
  the same names wrap exactly those algorithms (:mod:`nas_core.linas.designers`), and
  ``tests/test_contracts.py`` checks that every algorithm name is also a registered engine, so a
  name means the same search at both levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas_core.errors import UserError
from nas_core.linas.designers import LinasDesigner, Nsga2Designer, RandomSearchDesigner
from nas_core.linas.engines import LinasSettings, Nsga2Settings

if TYPE_CHECKING:  # the run config imports this module; the types are for signatures only
    from nas_core.designers.base import Designer
    from nas_core.runconfig import RunConfig

Factory = Callable[..., "Designer"]


class EngineError(UserError, ValueError):
    """An engine name is unknown, or a registration is malformed."""


@dataclass(frozen=True)
class EngineInfo:
    """One registered engine.

    Attributes:
        name: what run configs, the CLI and the store call it.
        label: one line for the Setup page.
        factory: ``factory(config, *, api_key=None, on_call=None) -> Designer``.
        min_objectives: fewest objectives a run of this engine may have (multi-objective: 2).
        max_objectives: most objectives (None = no limit).
        batch: proposes a whole generation per iteration (the Setup page sets
            ``per_iteration`` to the population for these).
    """

    name: str
    label: str
    factory: Factory
    min_objectives: int = 0
    max_objectives: int | None = None
    batch: bool = False


_REGISTRY: dict[str, EngineInfo] = {}


def register_engine(
    name: str,
    label: str,
    factory: Factory,
    *,
    min_objectives: int = 0,
    max_objectives: int | None = None,
    batch: bool = False,
    replace: bool = False,
) -> EngineInfo:
    """Add an engine to the registry and return its record.

    Raises:
        EngineError: the name is empty or already taken (pass ``replace=True`` to override),
            the factory is not callable, or the objective range is empty.
    """
    name = str(name).strip()
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise EngineError(f"an engine name is letters, digits, '-' or '_', got {name!r}")
    if name in _REGISTRY and not replace:
        raise EngineError(f"engine {name!r} is already registered; pass replace=True to override it")
    if not callable(factory):
        raise EngineError(f"the factory of engine {name!r} must be callable, got {type(factory).__name__}")
    if min_objectives < 0 or (max_objectives is not None and max_objectives < max(1, min_objectives)):
        raise EngineError(
            f"engine {name!r}: objectives range {min_objectives}..{max_objectives} is empty"
        )
    info = EngineInfo(name, str(label) or name, factory, min_objectives, max_objectives, batch)
    _REGISTRY[name] = info
    return info


def unregister_engine(name: str) -> None:
    """Remove a registered engine (plug-in tests clean up with this); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def engine_names() -> tuple[str, ...]:
    """Every registered engine name, in registration order (built-ins first)."""
    return tuple(_REGISTRY)


def engine_labels() -> dict[str, str]:
    """Engine name -> one-line label, in registration order."""
    return {n: e.label for n, e in _REGISTRY.items()}


def get_engine(name: str) -> EngineInfo:
    """The record of engine ``name``.

    Raises:
        EngineError: no engine has that name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EngineError(f"engine {name!r} is unknown; use one of {', '.join(_REGISTRY)}") from None


def objectives_problem(name: str, objectives: tuple[str, ...]) -> str | None:
    """Why engine ``name`` cannot take these objectives (None when it can)."""
    info = get_engine(name)
    n = len(objectives)
    if n < info.min_objectives:
        return f"the {name} engine needs at least {_count(info.min_objectives)} objectives"
    if info.max_objectives is not None and n > info.max_objectives:
        many = [e.name for e in _REGISTRY.values() if e.max_objectives is None and e.min_objectives >= 2]
        alt = f", or use the {many[0]} engine for {_count(info.max_objectives + 1)} or more" if many else ""
        exactly = "exactly" if info.min_objectives == info.max_objectives else "at most"
        return (
            f"the {name} engine takes {exactly} {_count(info.max_objectives)} objectives, got {n} "
            f"({', '.join(objectives)}); choose {_count(info.max_objectives)}{alt}"
        )
    return None


def make_designer(config: RunConfig, *, api_key: str | None = None, on_call: Callable[[Any], None] | None = None
                  ) -> Designer:
    """A fresh designer of ``config.engine``.

    Raises:
        EngineError: the engine is not registered.
    """
    return get_engine(config.engine).factory(config, api_key=api_key, on_call=on_call)


def _count(n: int) -> str:
    return {1: "one", 2: "two", 3: "three", 4: "four"}.get(n, str(n))


# ------------------------------------------------------------------------------------- built-ins


def _llm(config: RunConfig, *, api_key: str | None = None, on_call: Callable[[Any], None] | None = None,
         **_: Any) -> Designer:
    from nas_core.designers.llm.designer import LlmDesigner  # torch (see Decisions)

    return LlmDesigner(config.llm, config.prompt, api_key=api_key, on_call=on_call)


def _heuristic(config: RunConfig, **_: Any) -> Designer:
    from nas_core.designers.heuristic import HeuristicDesigner  # torch (see Decisions)

    return HeuristicDesigner()


def _random(config: RunConfig, **_: Any) -> Designer:
    return RandomSearchDesigner()


def _linas(config: RunConfig, **_: Any) -> Designer:
    return LinasDesigner(LinasSettings(algorithm=config.algorithm))


def _nsga2(config: RunConfig, **_: Any) -> Designer:
    # NSGA-II keeps at most `population` parents; the run's population is its generation size.
    return Nsga2Designer(Nsga2Settings(population=max(2, config.population)))


register_engine("heuristic", "Heuristic designer (offline, rule-based edits of the best model)", _heuristic)
register_engine("llm", "LLM designer (FL-NAS) through an OpenAI-compatible endpoint", _llm)
register_engine("linas", "LINAS (predictor-guided evolutionary search)", _linas, min_objectives=2, batch=True)
register_engine("nsga2", "NSGA-II on real evaluations", _nsga2, min_objectives=2, max_objectives=2, batch=True)
register_engine("random", "Random search", _random, batch=True)

#: The built-in engines' names (plug-ins registered later are in :func:`engine_names`).
BUILTIN_ENGINES = engine_names()

__all__ = [
    "BUILTIN_ENGINES", "EngineError", "EngineInfo", "engine_labels", "engine_names", "get_engine",
    "make_designer", "objectives_problem", "register_engine", "unregister_engine",
]
