#!/usr/bin/env python3
"""Module imports of src/: fails when two modules import each other (directly or round a circle), or
when a product module imports the test instruments (src/testbed/).

A file's imports are the `crate::…` and `super::…` paths in its code (comments and the `mod tests`
of a file are left out), each resolved to the longest module path that exists. Imports of a module
by its own submodules (`super::` upwards) are not counted: a parent holds its children.
Usage: python3 .ci/imports.py [src]"""
import collections
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
for d, _, names in os.walk(root):
    for n in names:
        if n.endswith(".rs"):
            with open(os.path.join(d, n), encoding="utf-8") as f:
                files[os.path.join(d, n)] = f.read()


def module_of(path):
    parts = path[len(root) + 1 : -3].split("/")
    return tuple(parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts)


modules = {module_of(p): p for p in files}


def resolve(current, path):
    parts = path.split("::")
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        base = list(current)
        while parts and parts[0] == "super":
            base, parts = base[:-1], parts[1:]
    for i in range(len(parts), 0, -1):
        candidate = tuple(base + parts[:i])
        if candidate in modules:
            return candidate
    return None


graph = collections.defaultdict(set)
for module, path in modules.items():
    code = re.split(r"#\[cfg\(test\)\]\s*mod tests", files[path])[0]
    code = "\n".join(line for line in code.split("\n") if not line.strip().startswith("//"))
    for used in re.findall(r"\b((?:crate|super)(?:::\w+)+)", code):
        target = resolve(module, used)
        if target and target != module and module[: len(target)] != target:
            graph[module].add(target)

# Strongly connected components (Tarjan): a component of more than one module is a circle.
index, low, stack, on_stack, circles = {}, {}, [], set(), []
sys.setrecursionlimit(10_000)


def visit(v):
    index[v] = low[v] = len(index)
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
            component.append("::".join(w))
            if w == v:
                break
        if len(component) > 1:
            circles.append(sorted(component))


for m in list(modules):
    if m not in index:
        visit(m)

instruments = [
    ("::".join(a), "::".join(b))
    for a, targets in graph.items()
    for b in targets
    if a and a[0] not in ("testbed", "cli", "main") and b and b[0] == "testbed"
]
edges = sum(len(t) for t in graph.values())
print(f"imports: {len(modules)} modules, {edges} imports between them")
for c in circles:
    print("import circle:", " <-> ".join(c))
for a, b in instruments:
    print(f"product module {a} imports the test instruments ({b})")
sys.exit(1 if circles or instruments else 0)
