"""The LLM designer (FL-NAS): prompt (``prompt``), OpenAI-compatible client (``client``),
answer parsing (``parse``) and the designer that ties them together (``designer``).

Nothing an LLM says is executed: answers are size-capped, parsed as JSON data,
validated against the run's Choices and caps, and only then become proposals.
"""
