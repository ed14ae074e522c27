"""Data sets: format readers, the synthetic default, demographic groups, splits and the decode cache.

See :mod:`nas_core.data.index` for the record every reader returns and
:mod:`nas_core.data.ref` for :class:`DatasetRef`, the record by which runs and jobs read a data
set (folder, format, mapping, excluded rows, attributes, content hash). Entry points:
:func:`nas_core.data.prepare.prepare` (what the evaluator calls),
:func:`nas_core.data.isic2019.load_isic2019`, :func:`nas_core.data.synthetic.make_default`,
:func:`nas_core.data.cache.build_cache`, :func:`nas_core.data.splits.make_split`.

Only the light records are re-exported here, so importing the package stays cheap (no torch,
no PIL); import the sub-modules for the rest.
"""

from nas_core.data.index import UNKNOWN, AttributeSpec, DataError, DatasetIndex
from nas_core.data.ref import DatasetRef, DatasetRefError

__all__ = ["UNKNOWN", "AttributeSpec", "DataError", "DatasetIndex", "DatasetRef", "DatasetRefError"]
