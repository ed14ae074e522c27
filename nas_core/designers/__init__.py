"""Designers: everything that proposes candidates (LLM, heuristic, random, LINAS, NSGA-II).

See :mod:`nas_core.designers.base` for the protocol all of them implement.
"""
