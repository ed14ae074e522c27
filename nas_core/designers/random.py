"""The random designer: valid random specs that the run has not seen (a baseline for every engine).

There is one random designer (see :mod:`nas_core.engines`): :class:`RandomDesigner` is
:class:`nas_core.linas.designers.RandomSearchDesigner`, the benchmark's
:class:`~nas_core.linas.engines.RandomEngine` on the run's space (uniform over valid gene rows,
never one already in the run, deterministic for a (seed, iteration) pair; in super-network runs
over the super-network's sub-networks). This name stays for existing imports.
"""

from __future__ import annotations

from nas_core.linas.designers import RandomSearchDesigner

RandomDesigner = RandomSearchDesigner

__all__ = ["RandomDesigner"]
