"""The designer contract's helpers for the designer tests; the suite is :class:`nas_core.testing.DesignerTestCase`."""

from __future__ import annotations

from nas_core.testing.designer import INPUT_SHAPE, base_context, check_proposals, measured_history

__all__ = ["INPUT_SHAPE", "base_context", "check_proposals", "measured_history"]
