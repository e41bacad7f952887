#!/usr/bin/env python3
"""Report import cycles among the files of one crate.

Usage: module_cycles.py CRATE_SRC_DIR  (run by .ci/run for the server crates and the CLI)

Every `crate::a::b` path (in `use` statements, including nested `{...}` groups, and anywhere in
code), every `super::` path outside inline modules, and every path starting with the bare name of one of the file's child
modules (`pub use args::X` in lib.rs), is an edge from the file it appears in to the file that defines the
module it names (the longest prefix that is a module file; items of the root go to the root).
Comments and string literals are ignored (intra-doc links are not imports); `#[cfg(test)]` code
counts. Prints every edge, then every strongly connected component of more than one file, and
exits 1 if there is one.
"""

import os
import re
import sys


def strip_comments_and_strings(text):
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            # A char literal (lifetimes have no closing quote right after one char).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> ['a::b', 'a::c::d', 'a::c']."""
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix, body = tree[:k], tree[k + 1 : tree.rindex("}")]
                parts, level, start = [], 0, 0
                for m, cm in enumerate(body):
                    if cm == "{":
                        level += 1
                    elif cm == "}":
                        level -= 1
                    elif cm == "," and level == 0:
                        parts.append(body[start:m])
                        start = m + 1
                parts.append(body[start:])
                paths = []
                for part in filter(None, parts):
                    for sub in expand_use_tree(part):
                        if sub == "self":
                            paths.append(prefix.rstrip(":"))
                        else:
                            paths.append(prefix + sub)
                return paths
            depth += 1
    return [tree.split(" as ")[0]]


def module_files(src):
    """module path tuple -> file (relative to src)."""
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, name), src)
            parts = rel[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            files[tuple(parts)] = rel
    return files


def resolve(path, here, files):
    """The file a path (list of segments, starting from the crate root) lands in."""
    best = ()
    for k in range(1, len(path) + 1):
        if tuple(path[:k]) in files:
            best = tuple(path[:k])
        else:
            break
    return files.get(best)


def block_end(code, start):
    """Where the block whose `{` is just before `start` closes."""
    depth = 1
    for k in range(start, len(code)):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(code)


def edges_of(rel, text, files, module):
    code = strip_comments_and_strings(text)
    # (path, where it is written) for every `use` tree leaf and every other `a::b` path.
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        paths.extend((path, m.start()) for path in expand_use_tree(m.group(1)))
    paths.extend((m.group(0), m.start()) for m in re.finditer(r"(?<![\w:])\w+(?:::(?:\w+|\*))+", code))
    inline = [m.end() for m in re.finditer(r"\bmod\s+\w+\s*\{", code)]
    # A file's child modules are in scope by their bare names (`pub use args::X` in lib.rs).
    children = {key[-1] for key in files if len(key) == len(module) + 1 and key[:-1] == module}
    targets = set()
    for path, at in paths:
        segments = [s for s in path.split("::") if s]
        if not segments:
            continue
        if segments[0] == "crate":
            absolute = segments[1:]
        elif segments[0] == "super":
            # At the top level of a file `super` is its parent module; inside an inline
            # `mod tests { ... }` it is the file itself (no edge).
            if any(start <= at < block_end(code, start) for start in inline):
                continue
            absolute = list(module[:-1]) + segments[1:]
        elif segments[0] in children:
            absolute = list(module) + segments
        else:
            continue
        target = resolve(absolute, module, files)
        if target and target != rel:
            targets.add(target)
    return targets


def strongly_connected(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    src = sys.argv[1]
    files = module_files(src)
    graph = {}
    for module, rel in sorted(files.items(), key=lambda kv: kv[1]):
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            graph[rel] = edges_of(rel, f.read(), files, module)
    for rel in sorted(graph):
        print(f"{rel:<16} -> {', '.join(sorted(graph[rel])) or '(nothing)'}")
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    print()
    if not cycles:
        print(f"no cycles among {len(graph)} files")
        return 0
    for component in cycles:
        print("cycle among: " + ", ".join(component))
        for v in component:
            inner = sorted(graph[v] & set(component))
            print(f"    {v} -> {', '.join(inner)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
