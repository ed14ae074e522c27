"""``python -m nas_core``: the headless CLI (see :mod:`nas_core.cli`)."""

from nas_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
