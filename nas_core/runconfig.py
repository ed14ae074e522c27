"""Every setting of a search run, as one frozen record that the store keeps as JSON.

Owns :class:`RunConfig`: the data set (what the user named, and the
:class:`~nas_core.data.ref.DatasetRef` every job reads it through), the engine and how candidates are measured,
the search space (Choices), the training settings and target Env, the metric
priorities, the prompt parts and LLM endpoint settings (never the key), the
multi-objective engines' objectives/constraints/population/algorithm, the budget,
and the loop settings (iterations, proposals per iteration, auto-approve, seed).
:meth:`RunConfig.from_dict` validates everything and says what is wrong and what
is allowed (:class:`RunConfigError`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_core.data.ref import DatasetRef
from nas_core.designers.llm.client import LlmSettings
from nas_core.designers.llm.prompt import PromptParts
from nas_core.engines import BUILTIN_ENGINES, engine_names, objectives_problem
from nas_core.errors import UserError
from nas_core.records import OBJECTIVES
from nas_core.rungs import HalvingSettings
from nas_core.selection import Priorities
from nas_core.settings import Env, TrainSettings
from nas_core.space import Choices

#: The built-in engines (the registry, :mod:`nas_core.engines`, is the one list; plug-ins add to it).
ENGINES = BUILTIN_ENGINES
EVALUATIONS = ("scratch", "supernet")
ALGORITHMS = ("auto", "nsga2", "agemoea", "unsga3", "moead", "ctaea")
#: Hand-made models every run is compared with (FL-NAS Table I); names of nas_core.models.baselines.
DEFAULT_BASELINES = ("resnet18", "resnet34", "mobilenet_v1", "mobilenet_v2")


class RunConfigError(UserError, ValueError):
    """A run setting is missing, unknown or out of range."""


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one run (see the field comments for the defaults' reasons)."""

    name: str = "search"  # shown in lists; need not be unique
    dataset: str = "data/default"  # what the user picked: a data set folder or a registered data set's name
    # How the data are read (folder, format, mapping, excluded rows, attributes, content hash); filled
    # from ``dataset`` when the run is created, and the only thing jobs read the data through.
    dataset_ref: DatasetRef | None = None
    engine: str = "heuristic"  # llm | heuristic | random | linas | nsga2; heuristic needs no endpoint
    evaluation: str = "scratch"  # scratch = train every candidate; supernet = slice a trained super-network
    choices: Choices = field(default_factory=Choices.default)  # the search space
    train: TrainSettings = field(default_factory=TrainSettings)  # same for every candidate (FL-NAS)
    env: Env = field(default_factory=Env)  # where latency/memory are measured
    priorities: Priorities = field(default_factory=Priorities)  # GetBestMetrics; paper default
    prompt: PromptParts = field(default_factory=PromptParts)  # FL-NAS Algorithm 2, editable
    llm: LlmSettings = field(default_factory=LlmSettings)  # endpoint settings; the key is never here
    objectives: tuple[str, ...] = ("accuracy", "unfairness", "params")  # LINAS / NSGA-II objectives
    constraints: tuple[tuple[str, str, float], ...] = ()  # (metric, "<=" | ">=", bound)
    population: int = 8  # LINAS / NSGA-II initial population (random designs measured first)
    algorithm: str = "auto"  # LINAS inner pymoo algorithm; auto picks by number of objectives
    budget: int | None = None  # most candidates to evaluate (baselines not counted); None = no cap
    iterations: int = 10  # iterations the CLI runs
    per_iteration: int = 1  # proposals per iteration (FL-NAS: one)
    auto_approve: bool = False  # approve every proposal without a person (unattended runs)
    seed: int = 0  # designers' randomness derives from (seed, iteration)
    baselines: tuple[str, ...] = DEFAULT_BASELINES  # compared in the `table` command
    device: str = "auto"  # where candidates train: cpu | cuda | auto
    n_classes: int | None = None  # filled from the data set when the run is created
    dataset_summary: str = ""  # filled from the data set when the run is created (for the prompt)
    # Successive halving (nas_core.rungs): a cheap preliminary rung first, the best go on to full training.
    halving: HalvingSettings = field(default_factory=HalvingSettings)

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise RunConfigError("a run needs a name")
        if self.engine not in engine_names():
            raise RunConfigError(f"engine {self.engine!r} is unknown; use one of {', '.join(engine_names())}")
        if self.evaluation not in EVALUATIONS:
            raise RunConfigError(f"evaluation {self.evaluation!r} is unknown; use scratch or supernet")
        if self.algorithm not in ALGORITHMS:
            raise RunConfigError(f"algorithm {self.algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise RunConfigError(f"objective {name!r} is unknown; known: {', '.join(OBJECTIVES)}")
        problem = objectives_problem(self.engine, tuple(self.objectives))
        if problem:
            raise RunConfigError(problem)
        cons = []
        for c in self.constraints:
            if len(c) != 3:
                raise RunConfigError(f"a constraint is (metric, '<=' or '>=', bound), got {c!r}")
            metric, op, bound = c
            if metric not in OBJECTIVES:
                raise RunConfigError(f"constraint metric {metric!r} is unknown; known: {', '.join(OBJECTIVES)}")
            if op not in ("<=", ">="):
                raise RunConfigError(f"constraint operator {op!r} must be '<=' or '>='")
            try:
                cons.append((str(metric), str(op), float(bound)))
            except (TypeError, ValueError) as exc:
                raise RunConfigError(f"constraint bound {bound!r} is not a number") from exc
        object.__setattr__(self, "constraints", tuple(cons))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in ("population", "iterations", "per_iteration"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise RunConfigError(f"{name} must be a whole number of at least 1, got {v!r}")
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise RunConfigError(f"budget must be a whole number of at least 1 or empty, got {self.budget!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise RunConfigError(f"device {self.device!r} is not supported; use cpu, cuda or auto")
        if self.dataset_ref is not None and not isinstance(self.dataset_ref, DatasetRef):
            raise RunConfigError(f"dataset_ref must be a DatasetRef, got {type(self.dataset_ref).__name__}")
        if self.n_classes is not None and self.n_classes < 2:
            raise RunConfigError(f"a classification data set needs at least 2 classes, got {self.n_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the training images."""
        return (3, self.train.image_size, self.train.image_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what the store keeps)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if hasattr(v, "to_dict"):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; missing fields keep their defaults.

        Raises:
            RunConfigError (or the part's own UserError): naming the wrong field.
        """
        if not isinstance(data, Mapping):
            raise RunConfigError(f"run settings must be an object, got {type(data).__name__}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise RunConfigError(f"run settings: unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
        d = dict(data)
        parts: dict[str, type] = {
            "choices": Choices, "train": TrainSettings, "env": Env,
            "priorities": Priorities, "prompt": PromptParts, "llm": LlmSettings, "halving": HalvingSettings,
        }
        if d.get("dataset_ref") is not None and not isinstance(d["dataset_ref"], DatasetRef):
            d["dataset_ref"] = DatasetRef.from_dict(d["dataset_ref"])
        for name, kind in parts.items():
            if name in d and not isinstance(d[name], kind):
                if not isinstance(d[name], Mapping):
                    raise RunConfigError(f"run settings: {name} must be an object, got {type(d[name]).__name__}")
                d[name] = kind.from_dict(d[name])  # type: ignore[attr-defined]
        for name in ("objectives", "baselines"):
            if name in d:
                d[name] = tuple(d[name])
        if "constraints" in d:
            d["constraints"] = tuple(tuple(c) for c in d["constraints"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise RunConfigError(f"run settings: {exc}") from exc

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def parse_constraint(text: str) -> tuple[str, str, float]:
    """Parse ``"params<=500000"`` or ``"accuracy>=0.7"``.

    Raises:
        RunConfigError: when the text is not metric, operator, number.
    """
    for op in ("<=", ">="):
        if op in text:
            metric, _, bound = text.partition(op)
            try:
                return (metric.strip(), op, float(bound))
            except ValueError as exc:
                raise RunConfigError(f"constraint {text!r}: {bound.strip()!r} is not a number") from exc
    raise RunConfigError(f"constraint {text!r} must look like metric<=number or metric>=number")
