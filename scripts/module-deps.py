#!/usr/bin/env python3
"""The library's module graph: for each top-level module of src/, the crate modules its code
(comments and unit tests left out) refers to, and every cycle. Exits non-zero on a cycle.
Usage: scripts/module-deps.py"""
import glob
import re
import sys

graph = {}
for path in glob.glob("src/**/*.rs", recursive=True):
    rel = path[len("src/"):]
    if rel in ("main.rs", "lib.rs", "test_support.rs") or rel.startswith("cli/"):
        continue  # the binary, the root and test helpers sit above every module
    top = rel.split("/")[0].removesuffix(".rs")
    text = open(path).read()
    cut = text.find("#[cfg(test)]\nmod ")
    if cut >= 0:
        text = text[:cut]
    code = "\n".join(l.split("//")[0] for l in text.splitlines())
    deps = {d for d in re.findall(r"crate::([a-z_]+)", code) if d != top}
    graph.setdefault(top, set()).update(deps)

cycles, state = [], {}


def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for dep in sorted(graph.get(node, ())):
        if state.get(dep) == "open":
            cycles.append(stack[stack.index(dep):] + [dep])
        elif dep in graph and dep not in state:
            visit(dep, stack)
    stack.pop()
    state[node] = "done"


for node in sorted(graph):
    if node not in state:
        visit(node, [])
for node in sorted(graph):
    print(f"{node:12} -> {', '.join(sorted(d for d in graph[node] if d in graph))}")
for cycle in cycles:
    print("cycle:", " -> ".join(cycle))
sys.exit(1 if cycles else 0)
