"""The house rules of DESIGN.md about who may import what."""

import ast
import pathlib
from collections.abc import Collection

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


# --- no function-local imports of the engine's own modules, except to defer a heavy library -------------

#: Libraries whose import takes long (seconds for torch) or that are optional extras: a light module may
#: import an engine module that loads one of them inside the function that needs it.
HEAVY_LIBRARIES = {"torch", "torchvision", "ray", "openai", "plotly", "pymoo", "sklearn", "fairlearn", "onnx",
                   "onnxruntime", "onnxscript", "optuna", "nas_bench_graph"}

#: Function-local imports of light engine modules (or from a module that is heavy itself) that stay, each
#: for a reason the test cannot see. Keep this small: fix the import order or move the shared type down.
LOCAL_IMPORT_REASONS = {
    # layering rule (test_linas_reaches_the_super_network_only_from_its_designers_when_asked)
    "linas/designers.py": (1, "LinasDesigner in super-network mode reaches the sub-network space, only when asked"),
    # circles that a module-level import would close; the fix is to move the shared type down a layer
    "rungs.py": (2, "runconfig imports rungs (HalvingSettings): move HalvingSettings to settings.py"),
    "data/formats.py": (3, "isic2019 and groups import formats: move the format registry's shared parts down"),
    "linas/engines.py": (1, "fastmoo imports linas.engines"),
    # a command's module that every CLI command's parser would load (PIL, multiprocessing: ~50 ms of ~330)
    "data/cli.py": (1, "make-default's data.synthetic loads PIL; the CLI parser does not"),
    "data/cli_import.py": (2, "inspect/import's data.importer loads PIL (the cache); the CLI parser does not"),
    "supernet/cli.py": (1, "status's studio_supernet loads run_setup, hence data.prepare and PIL; the parser does not"),
}


ENGINE_FILES = {
    ".".join(p.relative_to(ROOT).with_suffix("").parts[:-1] if p.name == "__init__.py"
             else p.relative_to(ROOT).with_suffix("").parts): p
    for p in sorted((ROOT / "nas_core").rglob("*.py"))
}


def _scoped_nodes(tree: ast.AST):
    """(node, inside a function) for every node outside ``if TYPE_CHECKING:`` blocks."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        children = node.orelse if _is_type_checking(node) else list(ast.iter_child_nodes(node))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inner) for child in children)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> tuple[set[str], set[str]]:
    """(engine modules, other top-level packages) that an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        names = {a.name for a in node.names}
        return {n for n in names if n.split(".")[0] == "nas_core"}, {n.split(".")[0] for n in names} - {"nas_core"}
    name = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        name = ".".join(base + ([name] if name else []))
    if name.split(".")[0] != "nas_core":
        return set(), {name.split(".")[0]}
    submodules = {f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in ENGINE_FILES}
    # `from pkg import submodule` needs the submodule; any other name needs the module itself
    return submodules | ({name} if len(submodules) < len(node.names) else set()), set()


def _with_packages(modules: set[str], known: Collection[str]) -> set[str]:
    """``modules`` and every package above them (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    out = set()
    for m in modules:
        parts = m.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    return out


def _engine_graph():
    """Module-level engine imports, module-level library imports, and function-local engine imports."""
    top, libraries, local = {}, {}, {}
    for module, path in ENGINE_FILES.items():
        top[module], libraries[module], local[module] = set(), set(), []
        for node, in_function in _scoped_nodes(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            modules, libs = _targets(node, module, path.name == "__init__.py")
            if in_function:
                if modules:
                    local[module].append((node.lineno, sorted(modules)))
            else:
                top[module] |= modules - {module}
                libraries[module] |= libs
    return top, libraries, local


def _heavy_modules(top: dict[str, set[str]], libraries: dict[str, set[str]]) -> set[str]:
    """Engine modules whose import loads a heavy library (through any chain of module-level imports)."""
    heavy = {m for m in top if libraries[m] & HEAVY_LIBRARIES}
    changed = True
    while changed:
        changed = False
        for m, deps in top.items():
            if m not in heavy and (_with_packages(deps, top) | _with_packages({m}, top)) & heavy:
                heavy.add(m)
                changed = True
    return heavy


def _unexcused(top: dict[str, set[str]], libraries: dict[str, set[str]],
               local: dict[str, list[tuple[int, list[str]]]]) -> dict[str, list[str]]:
    """Per module, the function-local engine imports that do not defer a heavy library for a light module."""
    heavy = _heavy_modules(top, libraries)
    out: dict[str, list[str]] = {}
    for module, imports in local.items():
        for line, targets in imports:
            if module in heavy or not set(targets) <= heavy:
                out.setdefault(module, []).append(f"{module}:{line} imports {', '.join(targets)}")
    return out


def _unexcused_local_imports() -> dict[str, list[str]]:
    """:func:`_unexcused` of the engine, keyed by the file's path under nas_core/."""
    return {str(ENGINE_FILES[m].relative_to(ROOT / "nas_core")): found
            for m, found in _unexcused(*_engine_graph()).items()}


def test_function_local_imports_of_the_engine_only_defer_heavy_libraries():
    # A function-local import of a light engine module hides a circle or an import-order problem; one in a
    # module that loads torch anyway defers nothing. Both are fixed by moving the import to the top (or the
    # shared type down a layer), not by adding the file here.
    over = {}
    for rel, found in _unexcused_local_imports().items():
        allowed = LOCAL_IMPORT_REASONS.get(rel, (0, ""))[0]
        if len(found) > allowed:
            over[rel] = found
    assert over == {}, "function-local engine imports over the allowance (tests/test_layering.py):\n" + "\n".join(
        line for found in over.values() for line in found)


def test_the_local_import_allowances_name_files_that_exist():
    stale = [rel for rel in LOCAL_IMPORT_REASONS
             if not (ROOT / "nas_core" / rel).is_file()]
    assert stale == []


def test_the_local_import_check_excuses_only_a_light_module_deferring_a_heavy_one():
    top = {"nas_core.a": set(), "nas_core.b": set(), "nas_core.c": set(), "nas_core.d": {"nas_core.c"}}
    libraries = {"nas_core.a": {"json"}, "nas_core.b": {"numpy"}, "nas_core.c": {"torch"}, "nas_core.d": set()}
    local = {"nas_core.a": [(3, ["nas_core.d"]), (4, ["nas_core.b"])],  # d loads torch through c: excused
             "nas_core.b": [], "nas_core.c": [(9, ["nas_core.d"])], "nas_core.d": []}
    assert _unexcused(top, libraries, local) == {"nas_core.a": ["nas_core.a:4 imports nas_core.b"],
                                                 "nas_core.c": ["nas_core.c:9 imports nas_core.d"]}


def test_the_local_import_check_sees_heavy_chains_and_local_imports():
    top, libraries, local = _engine_graph()
    heavy = _heavy_modules(top, libraries)
    assert {"nas_core.models", "nas_core.evaluator", "nas_core.session"} <= heavy  # torch, directly or not
    assert not {"nas_core.studio", "nas_core.store", "nas_core.runconfig", "nas_core.engines"} & heavy
    assert any("nas_core.session" in targets for _, targets in local["nas_core.studio"])


def test_the_light_entry_points_import_no_heavy_library():
    # What the deferred imports buy, checked in a fresh interpreter: the app's pages (through studio) and
    # the CLI's parser load the engine without torch, pymoo, ray or openai.
    import subprocess
    import sys

    code = ("import sys, nas_core.studio, nas_core.cli, nas_core.runconfig, nas_core.engines, nas_core.worker; "
            "nas_core.cli.build_parser(); "
            f"print(sorted(m for m in {sorted(HEAVY_LIBRARIES)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_cli_parser_loads_no_image_library():
    # What the CLI entries of LOCAL_IMPORT_REASONS buy: every command's parser loads without PIL (the
    # importer, the synthetic data set and the run set-up load it when a command needs them).
    import subprocess
    import sys

    code = ("import sys, nas_core.cli; nas_core.cli.build_parser(); "
            "print(sorted(m for m in ('PIL', 'nas_core.data.importer', 'nas_core.data.synthetic', "
            "'nas_core.run_setup') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_engine_imports_have_no_circles():
    # Module-level imports only (a package's own `__init__` importing its submodules is no circle).
    top, _, _ = _engine_graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in top[v]:
            if w not in top:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in top:
        if v not in index:
            visit(v)
    assert circles == []


# --- the app's layers, continued: ui/ lies below pages/, the engine below both ---------------------------


def test_ui_never_imports_pages_or_the_app():
    offenders = {p.name: sorted(_imports(p) & {"pages", "app"}) for p in (ROOT / "ui").glob("*.py")
                 if _imports(p) & {"pages", "app"}}
    assert offenders == {}


def test_the_engine_never_imports_the_app():
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & {"pages", "ui", "app"})
                 for p in ENGINE_FILES.values() if _imports(p) & {"pages", "ui", "app"}}
    assert offenders == {}
