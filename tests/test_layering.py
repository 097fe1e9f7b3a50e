"""The house rule that runtime code never imports training code: no module of app/ outside app/train
imports app.train (the CLI names training modules as strings for its subcommands, imported on use)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_runtime_modules_do_not_import_training_code() -> None:
    runtime = [p for p in APP.rglob("*.py") if "train" not in p.relative_to(APP).parts[:1]]
    assert len(runtime) > 50
    offenders = {str(p.relative_to(APP)): sorted(m for m in imported_modules(p) if m == "app.train" or m.startswith("app.train."))
                 for p in runtime}
    assert not {k: v for k, v in offenders.items() if v}
