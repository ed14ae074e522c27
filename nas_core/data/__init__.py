"""Data sets: format readers, the synthetic default, demographic groups, splits and the decode cache.

See :mod:`nas_core.data.index` for the record every reader returns.
"""
