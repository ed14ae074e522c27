"""The house rules of DESIGN.md about who may import what."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_streamlit():
    offenders = [str(p) for p in (ROOT / "nas_core").rglob("*.py") if "streamlit" in _imports(p)]
    assert offenders == []


def test_engine_files_exist_to_check():
    # Guards the test above against passing on an empty glob.
    assert len(list((ROOT / "nas_core").rglob("*.py"))) >= 3


def test_pages_import_only_engine_ui_and_display_libraries():
    allowed = {"nas_core", "ui", "streamlit", "pandas", "plotly", "__future__", "typing", "json", "time",
               "datetime", "pathlib", "os", "io", "dataclasses", "collections", "math"}
    files = list((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
    offenders = {}
    for p in files:
        if p.exists():
            bad = _imports(p) - allowed
            if bad:
                offenders[p.name] = sorted(bad)
    assert offenders == {}
