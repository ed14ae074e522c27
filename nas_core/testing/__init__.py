"""Contract suites, Optuna-style: one importable test class per plug-in kind, one method per rule.

- :class:`DesignerTestCase`: every designer (every engine in :mod:`nas_core.engines`);
- :class:`ExecutorTestCase`: every executor (local, Ray);
- :class:`SearchSpaceTestCase`: every LINAS search space (the CNN Template, the super-network,
  NAS-Bench-Graph, and yours).

``tests/test_contracts.py`` runs them over every registered implementation. A plug-in author
runs a suite on their own space (or designer, or executor) with pytest::

    from nas_core.testing import SearchSpaceTestCase
    from my_package import MySpace

    class TestMySpace(SearchSpaceTestCase):
        def make_space(self):
            return MySpace()

Then ``pytest test_my_space.py`` reports each broken rule by name. For a designer implement
``make_designer()`` (and ``context_overrides()`` if it needs, e.g., two objectives); for an
executor ``make_executor()``. The suites need pytest (a development requirement).
"""

from nas_core.testing.designer import DesignerTestCase, base_context, check_proposals, measured_history
from nas_core.testing.executor import ExecutorTestCase
from nas_core.testing.space import SearchSpaceTestCase

__all__ = [
    "DesignerTestCase", "ExecutorTestCase", "SearchSpaceTestCase", "base_context", "check_proposals",
    "measured_history",
]
