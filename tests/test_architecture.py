"""docs/architecture.md's floors hold: no module of xbp imports a module of a floor above its own."""

from __future__ import annotations

import ast
from pathlib import Path

from tests._e2e import ROOT

FLOORS = {  # the table of docs/architecture.md: a module (or package) -> its floor
    "errors": 0,
    "backend": 1,
    "functions": 2, "layers": 2, "convolution": 2, "gradcheck": 2, "optimizers": 2,
    "net": 3, "nets": 3, "convnets": 3,
    "evaluation": 4, "hooks": 4, "training": 4, "divergence": 4, "resume": 4, "checkpoints": 4,
    "params_io": 4, "progress": 4, "distributed": 4,
    "datasets": 5, "graph": 5, "pickles": 5, "book": 5, "__main__": 5,
}
ALLOWED_UPWARD = {("net", "graph")}  # Net.to_graph's import inside the method, documented


def top(module: str) -> str:
    """xbp.backend.cupy -> backend; xbp.layers -> layers."""
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    """The xbp modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xbp.") \
                and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "xbp":
            found.update(f"xbp.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("xbp."))
    return found


def test_every_module_of_xbp_has_a_floor():
    names = {path.name if path.is_dir() else path.stem for path in (ROOT / "xbp").iterdir()
             if (path.is_dir() and (path / "__init__.py").is_file()) or
             (path.suffix == ".py" and path.stem != "__init__")}
    assert names == set(FLOORS), f"docs/architecture.md and FLOORS need: {sorted(names ^ set(FLOORS))}"


def test_no_module_imports_a_floor_above_its_own():
    upward = []
    for path in sorted((ROOT / "xbp").rglob("*.py")):
        parts = path.relative_to(ROOT / "xbp").with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package front re-exports
        own = parts[0]
        for module in imports(path):
            other = top(module)
            if other in FLOORS and FLOORS[other] > FLOORS[own] and (own, other) not in ALLOWED_UPWARD:
                upward.append(f"{path.relative_to(ROOT)} imports {module} (floor {FLOORS[other]} > "
                              f"{FLOORS[own]})")
    assert not upward, "\n".join(upward)
