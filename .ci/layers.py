#!/usr/bin/env python3
"""Checks that weir's modules import only down the layers that src/lib.rs declares.

src/lib.rs holds the one copy of the layer table, as a diagram whose rows read
`<layer number> │ module · module · ...`. Every `crate::MODULE` path in code (comments are
skipped) is an import edge from the top-level module of the file it appears in. The check
fails when:
- an edge points to a higher layer (an upward import);
- modules of one layer import each other in a cycle that the table's "Cycles inside a
  layer" list does not name (a list item reads ``- `a` ↔ `b`: reason``);
- a module declared in lib.rs is missing from the table, or the table names one that does
  not exist.

Usage: .ci/layers.py [SRC_DIR]   (default: src next to this script's parent)
Exit status 0 when clean, 1 with one line per problem otherwise.
"""

import os
import re
import sys

ROW = re.compile(r"^//!\s.*?(\d)\s*│\s*(.+?)\s*$")
ALLOWED = re.compile(r"^//! - `(\w+)` ↔ `(\w+)`")
DECLARED = re.compile(r"^(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+);", re.M)
CRATE_PATH = re.compile(r"\bcrate::(\w+)")


def read_table(lib_text):
    """{module: layer} and the set of allowed intra-layer cycle pairs."""
    layers, allowed = {}, set()
    for line in lib_text.splitlines():
        row = ROW.match(line)
        if row:
            for name in row.group(2).split("·"):
                layers[name.strip()] = int(row.group(1))
        pair = ALLOWED.match(line)
        if pair:
            allowed.add(frozenset(pair.groups()))
    return layers, allowed


def code_only(text):
    """The text without `//` comments (line and doc) and without string literals, so
    that a doc link or a message naming `crate::x` is not an import."""
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def top_module(src, path):
    """The top-level module a file belongs to; `foo_tests.rs` beside `foo.rs` is `foo`'s."""
    first = os.path.relpath(path, src).split(os.sep)[0]
    name = first[:-3] if first.endswith(".rs") else first
    return name[:-6] if name.endswith("_tests") else name


def edges(src, modules):
    """{(from, to): first file:line seen} over every .rs file under `src`."""
    found = {}
    for directory, _, files in os.walk(src):
        for file in sorted(files):
            if not file.endswith(".rs") or file in ("lib.rs", "main.rs"):
                continue
            path = os.path.join(directory, file)
            origin = top_module(src, path)
            with open(path, encoding="utf-8") as f:
                lines = code_only(f.read()).splitlines()
            for number, line in enumerate(lines, 1):
                for target in CRATE_PATH.findall(line):
                    if target != origin and target in modules:
                        found.setdefault((origin, target), f"{os.path.relpath(path, os.path.dirname(src.rstrip(os.sep)) or '.')}:{number}")
    return found


def cycles_within_layers(layers, found):
    """Strongly connected groups of more than one module, each inside one layer."""
    graph = {}
    for (a, b) in found:
        if layers.get(a) == layers.get(b):
            graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):  # Tarjan; the module graph has a few dozen nodes.
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def problems(src):
    with open(os.path.join(src, "lib.rs"), encoding="utf-8") as f:
        lib_text = f.read()
    layers, allowed = read_table(lib_text)
    declared = set(DECLARED.findall(lib_text))
    out = [f"src/lib.rs: module `{m}` is in no layer" for m in sorted(declared - set(layers))]
    out += [f"src/lib.rs: the layer table names `{m}`, which lib.rs does not declare"
            for m in sorted(set(layers) - declared)]
    found = edges(src, declared)
    for (a, b), where in sorted(found.items()):
        if a in layers and b in layers and layers[b] > layers[a]:
            out.append(f"{where}: `{a}` (layer {layers[a]}) imports `{b}` "
                       f"(layer {layers[b]}): imports point down")
    for group in cycles_within_layers(layers, found):
        pairs = [frozenset((a, b)) for (a, b) in found
                 if a in group and b in group and (b, a) in found]
        unnamed = [p for p in set(pairs) if p not in allowed]
        if unnamed or not pairs:
            where = "; ".join(found[(a, b)] for (a, b) in found if a in group and b in group)
            out.append(f"import cycle inside layer {layers[min(group)]}: "
                       f"{' ↔ '.join(sorted(group))} (not in lib.rs's list): {where}")
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src")
    found = problems(src)
    for line in found:
        print(line)
    if found:
        print(f"layers: {len(found)} problem(s); the table is in src/lib.rs", file=sys.stderr)
        return 1
    print("layers: every import points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
