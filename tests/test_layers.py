"""Dependencies point one way (docs/ARCHITECTURE.md, Layers and imports): models, sampling and
the bottom modules, then `photo`, then the engine, then data / training / evaluation / server /
integrations, then the commands and cli.py. Nothing imports a layer above its own.

Static: every import statement of every module under src/rtavatar, those inside functions and
relative ones too, read with `ast` (no module is imported, so a lazy import cannot hide)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rtavatar"

BASE = ("rtavatar.models", "rtavatar.diffusion", "rtavatar.checkpoints", "rtavatar.config", "rtavatar.media",
        "rtavatar.errors", "rtavatar.utils", "rtavatar.tts", "rtavatar.latents", "rtavatar.assets")
BOTTOM = (*BASE, "rtavatar.photo", "rtavatar.engine")
ABOVE_BOTTOM = ("rtavatar.data", "rtavatar.training", "rtavatar.evaluation", "rtavatar.server", "rtavatar.commands",
                "rtavatar.integrations", "rtavatar.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every import in `tree`; `from A import b` gives A and A.b (b may be a
    module), relative imports resolved against `module`."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if a.name != "*"]
    return out


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports() -> list[tuple[str, str, int, str]]:
    """(file relative to src/, importing module, line, imported module) for every rtavatar import."""
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for line, name in imported_names(tree, mod, path.name == "__init__.py"):
            if within(name, ("rtavatar",)):
                rows.append((str(path.relative_to(PACKAGE.parents[1])), mod, line, name))
    return rows


def violations(importers: tuple[str, ...], forbidden: tuple[str, ...], allow: tuple[str, ...] = ()) -> list[str]:
    """'file:line: imports module' for each import statement of an importer that reaches a forbidden module."""
    found: dict[tuple[str, int], str] = {}
    for file, mod, line, name in imports():
        if within(mod, importers) and not within(mod, allow) and within(name, forbidden):
            found[file, line] = min(found.get((file, line), name), name, key=len)  # `from A import b`: say A
    return [f"{file}:{line}: imports {name}" for (file, line), name in sorted(found.items())]


def test_the_scan_sees_every_kind_of_import() -> None:
    code = ("import rtavatar.training.common\nfrom rtavatar import data\nfrom .. import server\n"
            "from ..evaluation.sync import load_expert\nfrom . import core\n"
            "def f():\n    from rtavatar.commands.bench import run_bench\n")
    names = {n for _, n in imported_names(ast.parse(code), "rtavatar.engine.avatar", False)}
    assert {"rtavatar.training.common", "rtavatar.data", "rtavatar.server", "rtavatar.evaluation.sync",
            "rtavatar.engine.core", "rtavatar.commands.bench"} <= names
    assert len(imports()) > 100 and any(m == "rtavatar.cli" for _, m, _, _ in imports())


def test_models_photo_engine_and_the_bottom_modules_import_nothing_above_them() -> None:
    bad = violations(BOTTOM, ABOVE_BOTTOM)
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def test_models_and_the_base_modules_import_no_photo_or_engine_and_photo_no_engine() -> None:
    bad = violations(BASE, ("rtavatar.photo", "rtavatar.engine")) + violations(("rtavatar.photo",), ("rtavatar.engine",))
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def test_only_the_cli_imports_the_commands() -> None:
    bad = violations(("rtavatar",), ("rtavatar.commands",), allow=("rtavatar.cli", "rtavatar.commands"))
    assert not bad, "only cli.py may import rtavatar.commands:\n" + "\n".join(bad)


def test_data_imports_no_training_evaluation_or_server() -> None:
    bad = violations(("rtavatar.data",), ("rtavatar.training", "rtavatar.evaluation", "rtavatar.server",
                                          "rtavatar.integrations", "rtavatar.commands", "rtavatar.cli"))
    assert not bad, "rtavatar.data imports from a layer above:\n" + "\n".join(bad)


def test_evaluation_imports_no_training() -> None:
    bad = violations(("rtavatar.evaluation",), ("rtavatar.training", "rtavatar.server", "rtavatar.integrations",
                                                "rtavatar.commands", "rtavatar.cli"))
    assert not bad, "rtavatar.evaluation imports from a layer above:\n" + "\n".join(bad)
