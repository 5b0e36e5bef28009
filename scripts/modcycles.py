#!/usr/bin/env python3
"""Module cycles inside one Rust crate.

Usage:
    python3 scripts/modcycles.py CRATE_SRC_DIR [--exclude-tests] [--strict-root] [--siblings-only]
                                               [--depth=N] [--edges]

Builds the graph "module A uses something from module B" from the source text and prints every
cycle (each strongly connected component with more than one module, with one concrete cycle
through it and the lines that make each edge), or "no cycles". Exit status 1 when there are
cycles, so it can gate CI:

    for c in crates/*/src; do python3 scripts/modcycles.py "$c" || echo "^ in $c"; done

What counts as an edge A -> B (A, B modules of the same crate, A != B):
  * any path `crate::x::y...`, `super::...`, `self::...` in A (in `use` trees, including nested
    braces like `use crate::{a, b::{c, d}}`, and inline in code such as `crate::telemetry::Metrics`)
    that resolves to module B (the longest prefix naming a module);
  * in the crate root (lib.rs/main.rs), bare paths `x::...` where `x` is a module it declares.
Comments (including doc comments and intra-doc links) and string/char literals are ignored.
Names the crate root re-exports (`pub use client::Client;` then `crate::Client` elsewhere) are
resolved to the module that defines them. The root's own `pub use` re-exports are a facade and
are not edges from the root (so `crate::Name` -> root -> module is not reported as a cycle) unless
--strict-root is given; items defined in the root itself are the node `crate`.
Inline modules (`mod tests { ... }`) belong to their file's module; their `super::` is the file's
module. `#[cfg(test)]` modules are included (marked "test" in the output) unless --exclude-tests.
--siblings-only leaves the crate root out (so a child using an item defined in lib.rs while
lib.rs uses the child is not reported; only cycles among the modules themselves are).
--depth=N collapses nested modules to their first N path segments (default: no collapsing; the
crates checked here are flat).

It is a text-level approximation of rustc's name resolution: macros that build paths, `#[path]`
attributes and glob re-exports chains are not followed.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals (keeping offsets and newlines), so paths in them are
# not seen.
# ---------------------------------------------------------------------------------------------

def strip(src):
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 260]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            hashes = m.group(1)
            end = src.find('"' + hashes, i + len(m.group(0)))
            j = n if end < 0 else end + 1 + len(hashes)
            blank(i, j)
            i = j
        elif c == "b" and src.startswith('b"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            i += 1  # the string itself is handled next round
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), or a lifetime/label ('a, 'static).
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", src[i:i + 16])
            if m:
                blank(i, i + len(m.group(0)))
                i += len(m.group(0))
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The module tree of a crate, from its files.
# ---------------------------------------------------------------------------------------------

def module_files(src_dir):
    """{module path tuple: file path}; the root is ()."""
    mods = {}
    for root, _dirs, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, src_dir)
            parts = rel[:-3].split(os.sep)
            if parts == ["lib"] or parts == ["main"]:
                key = ()
            elif parts[-1] == "mod":
                key = tuple(parts[:-1])
            else:
                key = tuple(parts)
            if parts[0] == "bin":
                continue  # binaries are crates of their own
            mods.setdefault(key, full)
    # Only modules actually declared (reachable with `mod x;` from their parent) count.
    declared = {(): mods.get(())}
    if declared[()] is None:
        sys.exit(f"{src_dir}: no lib.rs or main.rs")
    stack = [()]
    while stack:
        m = stack.pop()
        text = strip(open(declared[m], encoding="utf-8").read())
        for name in re.findall(r"\bmod\s+(" + IDENT + r")\s*;", text):
            child = m + (name,)
            if child in mods and child not in declared:
                declared[child] = mods[child]
                stack.append(child)
    return declared


# ---------------------------------------------------------------------------------------------
# Paths in a file.
# ---------------------------------------------------------------------------------------------

def parse_tree(text, i):
    """Parses a use-tree / path starting at text[i] (just after a leading `crate::` etc.).
    Returns (list of segment lists, end offset)."""
    n = len(text)

    def ws(j):
        while j < n and text[j].isspace():
            j += 1
        return j

    i = ws(i)
    if i < n and text[i] == "{":
        paths, j = [], i + 1
        while True:
            j = ws(j)
            if j < n and text[j] == "}":
                return paths, j + 1
            sub, j = parse_tree(text, j)
            paths.extend(sub)
            j = ws(j)
            if j < n and text[j] == ",":
                j += 1
                continue
            j = ws(j)
            if j < n and text[j] == "}":
                return paths, j + 1
            return paths, j  # malformed; stop
    if i < n and text[i] == "*":
        return [[]], i + 1
    m = re.compile(IDENT).match(text, i)
    if not m:
        return [[]], i
    seg = m.group(0)
    j = m.end()
    k = ws(j)
    if text.startswith("::", k):
        k2 = ws(k + 2)
        if k2 < n and text[k2] == "<":  # turbofish: the path ends here
            return [[seg]], j
        sub, end = parse_tree(text, k2)
        return [[seg] + s for s in sub], end
    return [[seg]], j


def inline_modules(text):
    """[(start, end, name, is_test)] of inline `mod name { ... }` blocks."""
    blocks = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        before = text[max(0, m.start() - 200):m.start()]
        is_test = bool(re.search(r"#\[cfg\(\s*test\s*\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s*)?$", before)) \
            or m.group(1) == "tests"
        blocks.append((m.start(), j, m.group(1), is_test))
    return blocks


def paths_in(text, root, declared_children):
    """Yields (offset, kind, segments) for crate/super/self paths (and, in the root, bare paths
    through declared modules)."""
    heads = r"\b(crate|super|self)\s*::"
    if root and declared_children:
        heads = r"(?<![A-Za-z0-9_:])(crate|super|self|" + "|".join(map(re.escape, declared_children)) + r")\s*::"
    for m in re.finditer(heads, text):
        head = m.group(1)
        # `super::super::x`: collect the run of supers.
        supers = 0
        j = m.end()
        kind = head
        if head == "super":
            supers = 1
            while True:
                mm = re.compile(r"\s*super\s*::").match(text, j)
                if not mm:
                    break
                supers += 1
                j = mm.end()
        trees, _ = parse_tree(text, j)
        for segs in trees:
            if kind in ("crate", "super", "self"):
                yield m.start(), kind, supers, segs
            else:
                yield m.start(), "crate", 0, [head] + segs


def reexports(root_text, modules):
    """{name: module tuple} for `pub use x::...::Name` (and `{A, B}`, `Name as Alias`) in the root."""
    names = {}
    for m in re.finditer(r"\bpub(\([^)]*\))?\s+use\s+", root_text):
        start = m.end()
        lead = re.compile(r"(crate\s*::\s*)?").match(root_text, start)
        for segs in parse_tree(root_text, lead.end())[0]:
            # find the module prefix
            mod = ()
            k = 0
            while k < len(segs) and mod + (segs[k],) in modules:
                mod += (segs[k],)
                k += 1
            if mod and k < len(segs):
                names[segs[-1]] = mod
        # `as` aliases
        tail = root_text[start:root_text.find(";", start)]
        for a, b in re.findall(r"(" + IDENT + r")\s+as\s+(" + IDENT + r")", tail):
            if a in names:
                names[b] = names[a]
    return names


def root_facade_spans(root_text):
    """Offsets of the root's `pub use ...;` statements (facade re-exports)."""
    spans = []
    for m in re.finditer(r"\bpub(\([^)]*\))?\s+use\s+[^;]*;", root_text):
        spans.append((m.start(), m.end()))
    return spans


def build_graph(src_dir, include_tests=True, strict_root=False, depth=None):
    modules = module_files(src_dir)
    root_text = strip(open(modules[()], encoding="utf-8").read())
    reexported = reexports(root_text, modules)
    edges = defaultdict(list)  # (a, b) -> [(file, line, test?)]

    def collapse(m):
        if depth is None or m == ("crate",):
            return m
        return m[:depth]

    for mod, path in sorted(modules.items()):
        raw = open(path, encoding="utf-8").read()
        text = strip(raw)
        blocks = inline_modules(text)
        is_root = mod == ()
        children = [k[-1] for k in modules if len(k) == 1] if is_root else []
        facade = root_facade_spans(text) if is_root and not strict_root else []
        for off, kind, supers, segs in paths_in(text, is_root, children):
            if any(a <= off < b for a, b in facade):
                continue
            inner = [b for b in blocks if b[0] < off < b[1]]
            in_test = any(b[3] for b in inner)
            if in_test and not include_tests:
                continue
            # The module the path is written in, counting inline modules.
            here = mod + tuple(b[2] for b in sorted(inner))
            if kind == "crate":
                base = ()
            elif kind == "self":
                base = here
            else:
                base = here[:max(0, len(here) - supers)]
            # Walk down the file-module tree (inline modules are part of their file).
            target = base
            while len(target) > len(mod) and target not in modules:
                target = target[:-1]  # inside an inline module of this very file
            k = 0
            while k < len(segs) and target + (segs[k],) in modules:
                target += (segs[k],)
                k += 1
            if target == () and k < len(segs) and segs[k] in reexported:
                target = reexported[segs[k]]
            if target not in modules:
                # an inline module path of this file
                continue
            a = collapse(mod) if mod else ("crate",)
            b = collapse(target) if target else ("crate",)
            if a == b:
                continue
            line = raw.count("\n", 0, off) + 1
            edges[(a, b)].append((os.path.relpath(path, src_dir), line, in_test))
    nodes = {collapse(m) if m else ("crate",) for m in modules}
    return nodes, edges


# ---------------------------------------------------------------------------------------------
# Cycles: strongly connected components (Tarjan), and one concrete cycle through each.
# ---------------------------------------------------------------------------------------------

def sccs(nodes, adj):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def a_cycle(comp, adj):
    """A shortest cycle through the first node of the component (BFS inside the component)."""
    inside = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(adj[v]):
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp + [comp[0]]


def name(m):
    return "crate (root)" if m == ("crate",) else "::".join(m)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__)
        return 2
    opts = set(a for a in argv[1:] if a.startswith("--"))
    depth = None
    for a in argv[1:]:
        if a.startswith("--depth"):
            depth = int(a.split("=", 1)[1]) if "=" in a else None
    nodes, edges = build_graph(
        args[0],
        include_tests="--exclude-tests" not in opts,
        strict_root="--strict-root" in opts,
        depth=depth,
    )
    if "--siblings-only" in opts:
        nodes.discard(("crate",))
        edges = {k: v for k, v in edges.items() if ("crate",) not in k}
    adj = defaultdict(set)
    for (a, b) in edges:
        adj[a].add(b)
    if "--edges" in opts:
        for (a, b), where in sorted(edges.items()):
            test = " (test only)" if all(t for _, _, t in where) else ""
            print(f"{name(a)} -> {name(b)}{test}")
    comps = sccs(nodes, adj)
    if not comps:
        print(f"{args[0]}: no cycles ({len(nodes)} modules, {len(edges)} edges)")
        return 0
    print(f"{args[0]}: {len(comps)} cycle(s)")
    for comp in comps:
        cyc = a_cycle(comp, adj)
        print(f"  modules {{{', '.join(name(m) for m in comp)}}}")
        print(f"    cycle: {' -> '.join(name(m) for m in cyc)}")
        inside = set(comp)
        print("    edges inside:")
        for (a, b), where in sorted(edges.items()):
            if a not in inside or b not in inside:
                continue
            seen, shown = set(), []
            for f, l, t in where:
                if (f, l) not in seen:
                    seen.add((f, l))
                    shown.append(f"{f}:{l}{' (test)' if t else ''}")
            more = f" (+{len(shown) - 4} more)" if len(shown) > 4 else ""
            print(f"      {name(a)} -> {name(b)}: {', '.join(shown[:4])}{more}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
