"""The import graph: layers point one way (npnet <- eval <- cli, studio) and npnet has no import loops."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_NPNET = ("eval", "studio", "cli", "gradio", "plotly")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute and relative import in a file (module level and inside functions), as module names."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _npnet_files() -> list[Path]:
    return sorted((ROOT / "npnet").rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    """npnet module -> the npnet modules it imports (a name imported from a package counts if it is a module)."""
    modules = {_module_name(p): p for p in _npnet_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for _, m in _imports(path) if m in modules and m != name and m != "npnet"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_npnet_imports_nothing_from_the_layers_above_it():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _npnet_files()
        for line, module in _imports(path)
        if module.split(".")[0] in FORBIDDEN_IN_NPNET
    ]
    assert not wrong, "\n".join(wrong)


# Pure layer modules that npnet/model.py may build from (they import nothing of the project themselves).
MODEL_LAYER_MODULES = ("npnet.token_conditioning",)


def test_the_model_module_imports_nothing_of_the_project():
    ours = [m for _, m in _imports(ROOT / "npnet" / "model.py") if m.split(".")[0] in ("npnet", *FORBIDDEN_IN_NPNET)]
    assert all(any(m == layer or m.startswith(layer + ".") for layer in MODEL_LAYER_MODULES) for m in ours)
    for module in MODEL_LAYER_MODULES:
        path = ROOT / (module.replace(".", "/") + ".py")
        assert not [m for _, m in _imports(path) if m.split(".")[0] in ("npnet", *FORBIDDEN_IN_NPNET)]


def test_npnet_has_no_import_loops():
    assert _cycles(_graph()) == []


def test_eval_never_imports_the_app_or_the_command_lines():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "eval").rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in ("studio", "cli", "gradio")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_cycle_finder_finds_a_loop():
    """The checks above can fail: a two-module loop and a module reaching up are both caught."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
