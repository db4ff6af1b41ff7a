"""The engine's modules form layers: each imports only modules below it, and none is large."""

import ast
import pathlib

import evs_driver.rowstore

#: Lowest first: dm persistent-data's shape, from the files up to the facade.
LAYERS = [
    "overlays",
    "geometry",
    "rwlock",
    "disk",
    "directory",
    "lockfile",
    "chunkstore",
    "metafile",
    "metastore",
    "spacemap",
    "nodes",
    "tree",
    "datamap",
    "devicetable",
    "state",
    "transaction",
    "collector",
    "groupcommit",
    "checker",
    "readpath",
    "writepath",
    "discard",
    "control",
    "groups",
    "diff",
    "crossdevice",
    "accounting",
    "pool",
    "blockdevice",
]
PACKAGE = pathlib.Path(evs_driver.rowstore.__file__).parent


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in ("evs_driver", "evs_driver.rowstore"):
                prefix = "evs_driver." if node.module == "evs_driver" else ""
                found.update(prefix + alias.name for alias in node.names)
            elif node.module.startswith("evs_driver."):
                found.add(node.module.removeprefix("evs_driver.rowstore."))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("evs_driver"))
    return found


def test_every_engine_module_has_a_place_in_the_layers():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_each_module_imports_only_layers_below_it_and_nothing_above_the_engine():
    for position, module in enumerate(LAYERS):
        for imported in _imports(module):
            if imported in LAYERS:
                assert LAYERS.index(imported) < position, f"{module} imports {imported}"
            else:  # outside the engine: only the neutral modules below it
                assert imported in {
                    "evs_driver.blockdev",  # the block-device contract the data path serves
                    "evs_driver.exception",
                    "evs_driver.fileio",
                    "evs_driver.reports",
                    "evs_driver.sqlitelog",
                }, f"{module} imports {imported}"


def test_no_engine_module_is_over_400_lines():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
