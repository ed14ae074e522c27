"""Builders of small, realistic records for designer, selection and session tests (no training).

They live in :mod:`nas_core.testing.records` so the importable contract suites use them too.
"""

from __future__ import annotations

from nas_core.testing.records import make_candidate, make_metrics

__all__ = ["make_candidate", "make_metrics"]
