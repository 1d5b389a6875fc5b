"""Who may import whom: arrows point one way (docs/ARCHITECTURE.md, "Layers").

Every `import genlab.X` / `from genlab.X import ...` in the package (at module level or inside a function) is
parsed with ast; a module may import its own layer or a lower one, never a higher one, and the subpackages
form no cycle. A new back-import fails here instead of surfacing as a circular-import error later.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genlab"

# Lowest first. A module belongs to the entry naming its longest dotted prefix.
LAYERS = [
    ("genlab.rng", "genlab.registry", "genlab.config", "genlab.card", "genlab.errors", "genlab.stats",
     "genlab.timing", "genlab.allocator"),
    ("genlab.nn", "genlab.data"),
    ("genlab.models", "genlab.objectives"),
    ("genlab.train", "genlab.sampling"),
    ("genlab.eval", "genlab.ood", "genlab.toy"),
    ("genlab.reports",),
    ("genlab.api", "genlab.cli", "genlab.configs", "genlab.quickstart", "genlab.app", "genlab"),
]
# Known back-imports still to remove, each with its reason. Keep this list short (empty now); never add to it lightly.
EXCEPTIONS: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return best


def _unit(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to; eval.feature_nets counts as its own."""
    parts = module.split(".")
    if parts[1:3] == ["eval", "feature_nets"]:
        return "genlab.eval.feature_nets"
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def genlab_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported genlab module, line) for every genlab import in the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
                if node.module == "genlab":  # `from genlab import data` names a subpackage
                    targets = [f"genlab.{a.name}" for a in node.names if a.name != "__version__"]
            else:
                continue
            out += [(importer, t, node.lineno) for t in targets if t == "genlab" or t.startswith("genlab.")]
    return out


def test_every_import_points_down_or_sideways():
    bad = []
    for importer, target, line in genlab_imports():
        if importer == "genlab":
            continue  # the package root is the façade: it reaches the API lazily, on first use
        if _layer(target) > _layer(importer) and (importer, target) not in EXCEPTIONS:
            bad.append(f"{importer} (line {line}, layer {_layer(importer)}) imports {target} "
                       f"(layer {_layer(target)})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_exceptions_still_exist():
    # An exception that was fixed must leave the list, so that it cannot come back unnoticed.
    seen = {(a, b) for a, b, _ in genlab_imports()}
    assert EXCEPTIONS <= seen, f"remove fixed exceptions: {sorted(EXCEPTIONS - seen)}"


def test_subpackages_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for importer, target, _ in genlab_imports():
        a, b = _unit(importer), _unit(target)
        if a != b and importer != "genlab":
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path
                            else f"import cycle through {nxt}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_the_layer_test_catches_a_back_import(tmp_path, monkeypatch):
    # The checker itself: a sampler importing the trainer's run loader is flagged.
    fake = tmp_path / "genlab"
    (fake / "sampling").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "sampling" / "__init__.py").write_text("")
    (fake / "sampling" / "bad.py").write_text("def f():\n    from genlab.reports.images import save_grid\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="genlab.sampling.bad .* imports genlab.reports.images"):
        test_every_import_points_down_or_sideways()


def test_import_genlab_is_light_and_leaves_matplotlib_alone():
    # `import genlab` loads no torch, matplotlib, tensorboard, torchmetrics or scipy; using the API then
    # leaves the user's matplotlib backend as it was.
    code = ("import sys, genlab, genlab.registry\n"
            "heavy = [m for m in ('torch', 'matplotlib', 'tensorboard', 'torchmetrics', 'scipy', 'sklearn')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import matplotlib\n"
            "matplotlib.use('svg')\n"
            "genlab.registry.load_plugins()\n"
            "import genlab.api, genlab.reports.figures, genlab.reports.ood\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
            "assert callable(genlab.train) and genlab.train.loop.train and callable(genlab.load)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
