"""``python -m ui.launch run app.py ...``: the ``streamlit`` command, with app.py's st.navigation in charge.

Streamlit keeps a process-wide "legacy pages/ folder" flag that is cleared only
when st.navigation runs. On a fresh server whose first visitor opens a page URL
such as /setup directly, the legacy mode would run pages/setup.py on its own for
the life of the process (no wide layout, file names as the menu). Clearing the
flag before the server starts makes every request go through app.py.
"""

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli


def main() -> int:
    """Run the streamlit CLI with the arguments given to this module."""
    PagesManager.uses_pages_directory = False
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
