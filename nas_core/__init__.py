"""EquiNAS Studio's engine: search for accurate, fair and small CNNs.

Never imports streamlit (a test checks it). Importing this package has no side effects.
"""

__version__ = "0.1.0"
