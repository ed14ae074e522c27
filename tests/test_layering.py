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


# --- the app's layers: pages and ui/ reach the engine only through nas_core.studio ---------------

APP_FILES = sorted((ROOT / "pages").glob("*.py")) + sorted((ROOT / "ui").glob("*.py")) + [ROOT / "app.py"]
#: What a page or a ui module may import from the engine: the view functions, and the exception types.
ENGINE_DOORS = {"nas_core.studio", "nas_core.errors"}


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST):
    """Every node, except those under ``if TYPE_CHECKING:`` (annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _engine_imports(path: pathlib.Path) -> set[str]:
    """Full names of the nas_core modules ``path`` imports at run time."""
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "nas_core")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "nas_core":
                out.update(f"nas_core.{a.name}" for a in node.names)
            elif node.module.split(".")[0] == "nas_core":
                out.add(node.module)
    return out


def test_app_files_exist_to_check():
    names = {p.name for p in APP_FILES if p.exists()}
    assert {"setup.py", "search.py", "results.py", "common.py", "app.py"} <= names


def test_pages_and_ui_import_the_engine_only_through_studio():
    offenders = {}
    for p in APP_FILES:
        if p.exists():
            bad = _engine_imports(p) - ENGINE_DOORS
            if bad:
                offenders[f"{p.parent.name}/{p.name}"] = sorted(bad)
    assert offenders == {}


def test_ui_never_imports_heavy_or_storage_libraries():
    forbidden = {"torch", "pymoo", "sklearn", "sqlite3", "openai"}
    offenders = {p.name: sorted(_imports(p) & forbidden) for p in (ROOT / "ui").glob("*.py") if _imports(p) & forbidden}
    assert offenders == {}


def test_pages_and_ui_never_call_the_store_directly():
    # the store object is passed to studio functions; any `store.<attribute>` in a page is a direct call
    offenders = []
    for p in APP_FILES:
        if not p.exists():
            continue
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, ast.Attribute):
                base = node.value
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
                if name == "store":
                    offenders.append(f"{p.parent.name}/{p.name}:{node.lineno} store.{node.attr}")
    assert offenders == []


def test_the_layering_checks_catch_a_violation(tmp_path):
    page = tmp_path / "bad.py"
    page.write_text("from nas_core.store import Store\nfrom nas_core import studio\n"
                    "if TYPE_CHECKING:\n    from nas_core.space import ArchSpec\n")
    assert _engine_imports(page) == {"nas_core.store", "nas_core.studio"}


# --- the search-space base lies below both engines packages -----------------------------------


def _module_level_imports(path: pathlib.Path) -> set[str]:
    """The nas_core modules ``path`` imports at module level (not inside a function or class)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    fake = ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.ClassDef))], type_ignores=[])
    out: set[str] = set()
    for node in _runtime_nodes(fake):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("nas_core"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nas_core"):
            out.add(node.module)
    return out


def _under(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


def test_the_super_network_never_imports_linas():
    files = sorted((ROOT / "nas_core" / "supernet").glob("*.py"))
    assert len(files) >= 5
    offenders = {p.name: sorted(_under(_engine_imports(p), "nas_core.linas")) for p in files
                 if _under(_engine_imports(p), "nas_core.linas")}
    assert offenders == {}


def test_linas_reaches_the_super_network_only_from_its_designers_when_asked():
    # LinasDesigner in super-network mode searches the sub-network space: one import, inside a function.
    offenders = {}
    for p in sorted((ROOT / "nas_core" / "linas").glob("*.py")):
        top = _under(_module_level_imports(p), "nas_core.supernet")
        anywhere = _under(_engine_imports(p), "nas_core.supernet")
        if top or (anywhere and p.name != "designers.py"):
            offenders[p.name] = sorted(anywhere)
    assert offenders == {}


def test_the_search_space_base_imports_neither_engine_package():
    names = _engine_imports(ROOT / "nas_core" / "searchspace.py")
    assert not _under(names, "nas_core.linas") and not _under(names, "nas_core.supernet")


def test_the_sub_network_space_loads_without_linas():
    import subprocess
    import sys

    code = ("import sys, nas_core.supernet.space; "
            "print(sorted(m for m in sys.modules if m.startswith('nas_core.linas')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_linas_and_the_super_network_share_one_base():
    from nas_core import linas, searchspace
    from nas_core.linas import space as linas_space
    from nas_core.supernet.space import SupernetSpace

    assert linas.SearchSpace is linas_space.SearchSpace is searchspace.SearchSpace
    assert linas.Gene is linas_space.Gene is searchspace.Gene
    assert issubclass(SupernetSpace, searchspace.SearchSpace)


# --- the engine names its store's type ---------------------------------------------------------

TYPED_STORE = ["rungs.py", "session.py", "run_setup.py", "search_cli.py", "studio.py", "worker.py",
               "data/importer.py", "data/ref.py", "data/uploads.py", "store/rungs.py"]


def _type_checking_names(path: pathlib.Path) -> dict[str, object]:
    """What the ``if TYPE_CHECKING:`` blocks of ``path`` import, imported (so its annotations resolve)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: dict[str, object] = {}
    for node in tree.body:
        if _is_type_checking(node):
            exec(compile(ast.Module(body=node.body, type_ignores=[]), str(path), "exec"), names)  # noqa: S102
    names.pop("__builtins__", None)
    return names


def test_engine_modules_annotate_the_store_as_store_and_the_annotations_resolve():
    import importlib
    import inspect
    import typing

    from nas_core.store import Store

    for rel in TYPED_STORE:
        path = ROOT / "nas_core" / rel
        assert "store: Any" not in path.read_text(), f"{rel}: annotate the store as Store (under TYPE_CHECKING)"
        module = importlib.import_module("nas_core." + rel[:-3].replace("/", "."))
        own = [o for o in vars(module).values() if getattr(o, "__module__", None) == module.__name__]
        funcs = [o for o in own if inspect.isfunction(o)]
        funcs += [f for c in own if inspect.isclass(c) for f in vars(c).values() if inspect.isfunction(f)]
        localns = {"Store": Store, **_type_checking_names(path)}
        typed = 0
        for func in funcs:
            hints = typing.get_type_hints(func, localns=localns)  # every annotation resolves
            typed += hints.get("store") in (Store, Store | None)
        assert typed, f"{rel}: no function takes a store typed Store"
