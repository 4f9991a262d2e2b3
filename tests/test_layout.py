"""The plan of the package holds: layers import only downwards, the UI is Gradio only, one
write-then-rename, and no module or function too long to read in one sitting.

Read from the source (ast), so it runs in milliseconds and needs no model.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "artlab"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# layer -> the artlab packages/modules it must never import (directly or inside a function)
FORBIDDEN = {
    "models": ("artlab.inference", "artlab.training", "artlab.store", "artlab.lab", "artlab.ui", "artlab.cli",
               "artlab.data", "artlab.indexing", "artlab.bulk"),
    "data": ("artlab.inference", "artlab.training", "artlab.store", "artlab.lab", "artlab.ui", "artlab.cli"),
    "inference": ("artlab.training", "artlab.store", "artlab.lab", "artlab.ui", "artlab.cli", "artlab.indexing"),
    "training": ("artlab.store", "artlab.lab", "artlab.ui", "artlab.cli", "artlab.indexing"),
    "store": ("artlab.lab", "artlab.ui", "artlab.cli", "artlab.training", "artlab.indexing", "artlab.bulk"),
    "indexing": ("artlab.lab", "artlab.ui", "artlab.cli", "artlab.training"),
    "lab": ("artlab.ui", "artlab.cli"),
    "curation": ("artlab.ui", "artlab.cli"),
    "ui": ("torch", "torchvision", "artlab.models", "artlab.inference", "artlab.training.loop", "artlab.cli"),
}


# The ground floor: what every layer may use, and which uses none of them.
BASE = ("paths", "files", "checkpoints", "images", "labels", "device", "memory", "tokenizer", "safe_text",
        "workdirs", "curator", "resample", "answers")
UPPER = ("artlab.inference", "artlab.training", "artlab.store", "artlab.lab", "artlab.ui", "artlab.cli",
         "artlab.indexing", "artlab.bulk", "artlab.curation", "artlab.data")
FORBIDDEN.update({name: UPPER for name in BASE})


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path):
    forbidden = FORBIDDEN.get(layer_of(path), ())
    bad = sorted(name for name in imported_names(path)
                 if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_only_the_ui_imports_gradio():
    users = [str(p.relative_to(PACKAGE)) for p in modules() if layer_of(p) != "ui"
             and any(n == "gradio" or n.startswith("gradio.") for n in imported_names(p))]
    assert users == []


def test_write_then_rename_lives_in_files_py_only():
    renamers = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "os":
                renamers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("mkstemp", "rename"):
                renamers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert all(r.startswith("files.py:") for r in renamers), renamers


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_read_in_one_sitting(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
