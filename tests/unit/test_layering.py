"""The package's modules form layers: each imports only layers below it (no circles, and
nothing low knows what wraps it), and none is longer than 400 lines."""

import ast
import pathlib

import evs_driver

ROOT = pathlib.Path(evs_driver.__file__).parent
#: Lowest first. Modules on one line are peers and do not import each other.
LAYERS = [
    ("units", "exception"),
    ("reports", "blockdev", "fileio", "faults", "rules", "imageio", "sqlitelog", "diffstream"),
    ("filedev", "copying", "locking", "catalog", "scheduling"),
    ("dataio",),
    ("nbd",),
    ("conf",),
    ("rowstore", "attach"),
    ("backends",),
    ("interface", "manageable", "groupdriver"),
    ("loader", "driver"),
    ("recovery",),
    ("manager",),
    ("operations",),
    ("service", "cinder_errors"),
    ("cinder_groups",),
    ("cinder", "cmd"),
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("evs_driver")
        ):
            if node.module == "evs_driver":
                found.update(alias.name for alias in node.names)
            else:
                found.add(_top(node.module))
        elif isinstance(node, ast.Import):
            found.update(_top(a.name) for a in node.names if a.name.startswith("evs_driver."))
    return found - {""}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts != ("__init__",):
            yield parts[0], path


def test_every_module_has_a_layer():
    missing = {top for top, _ in _modules()} - set(LEVEL)
    assert not missing, f"give these a place in LAYERS: {sorted(missing)}"


def test_modules_import_only_layers_below_them():
    wrong = []
    for top, path in _modules():
        for imported in _imports(path) - {top}:
            if LEVEL.get(imported, -1) >= LEVEL[top]:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, wrong


def test_no_module_is_over_400_lines():
    long = [
        str(p.relative_to(ROOT)) for _, p in _modules() if len(p.read_text().splitlines()) > 400
    ]
    assert not long, long
