"""The omama package's import graph: modules per subpackage, imports between subpackages, and circles.

An import is any ``import omama.x`` / ``from omama.x import ...`` (relative ones resolved) in a module, at its
top or inside a function: both make one module depend on the other. A circle is a set of modules that reach
each other through such imports (a strongly connected component of more than one module).

    python docs/import_graph.py                # the package of this checkout
    git archive ed5e959 omama | tar -x -C /tmp/before && python docs/import_graph.py /tmp/before/omama
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``package``."""
    root = package.parent
    out = {}
    for f in sorted(package.rglob("*.py")):
        parts = f.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports (a ``from pkg import mod`` names the module when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known and m != name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def group(module: str, package: str, subpackages: set[str]) -> str:
    """A module's subpackage (``omama.model``), or the package itself for its top-level modules."""
    first = ".".join(module.split(".")[:2])
    return first if first in subpackages else package


def graph_of(package: Path) -> dict[str, set[str]]:
    mods = modules(package)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def main() -> None:
    package = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "omama")
    graph = graph_of(package)
    name = package.name
    subpackages = {f"{name}.{d.name}" for d in package.iterdir() if (d / "__init__.py").is_file()}
    sizes = Counter(group(m, name, subpackages) for m in graph)
    edges = Counter((group(a, name, subpackages), group(b, name, subpackages)) for a, bs in graph.items() for b in bs)
    print(f"# {name}: {len(graph)} modules, {sum(map(len, graph.values()))} imports between them\n")
    print("| subpackage | modules |\n|---|---|")
    for g, n in sorted(sizes.items()):
        print(f"| {g} | {n} |")
    print("\n| from | to | imports |\n|---|---|---|")
    for (a, b), n in sorted(edges.items()):
        if a != b:
            print(f"| {a} | {b} | {n} |")
    found = circles(graph)
    print(f"\ncircles: {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
