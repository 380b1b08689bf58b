#!/usr/bin/env python3
"""The code's shape, as issue 14 measures it: long functions, import arrows
against the data flow, import cycles, and how many places spell each fault
kind's name. Usage: python3 ci/code-shape.py [--check] [ROOT]  (ROOT defaults to .)
With --check it exits 1 if an arrow runs against the flow, files import
each other in a cycle, or a function other than a table of data (ALLOWED)
is over 120 lines.

Rough by design (a brace counter, not a parser): strings, chars and comments
are blanked before braces are counted, which is enough for rustfmt'd code.
"""
import os
import re
import sys
from collections import defaultdict

ARGS = [a for a in sys.argv[1:] if a != "--check"]
CHECK = "--check" in sys.argv[1:]
ROOT = ARGS[0] if ARGS else "."
# Functions that are tables of data, not logic: the scenario's JSON schema.
ALLOWED = {("harness/scenario/schema.rs", "schema")}
SRC = [os.path.join(ROOT, "harness"), os.path.join(ROOT, "reports", "src")]

# Pipeline layers, low to high: a module may import its own layer or lower.
# Ground floor: shared vocabulary every stage may use.
LAYERS = {
    "ground": 0, "scenario": 1, "check": 2,
    "backends": 2, "fault": 3, "runner": 4, "main": 5, "demo": 1,
}
GROUND = {"duration", "exit", "crash_point", "history", "journal", "reports", "confine", "run_dir", "cancel", "kinds"}
BACKENDS = {"target", "targets", "probe", "workload", "proxy", "network", "engine", "image", "compose", "cluster"}
TOP = {"runner", "drill", "bench", "main", "lib", "analyze"}


def blank(src):
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2); j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and not (i and (src[i-1].isalnum() or src[i-1] == "_")):
            m = re.match(r'r(#*)"', src[i:]); end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0))); j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", src[i+1:j]) + '"'); i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", src[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", src[i:i + 12])
            out.append(" " * len(m.group(0))); i += len(m.group(0))
        else:
            out.append(c); i += 1
    return "".join(out)


def rust_files():
    for base in SRC:
        for d, _, files in os.walk(base):
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(d, f)


def functions(path):
    text = blank(open(path).read())
    lines = text.split("\n")
    for m in re.finditer(r"\bfn\s+(\w+)", text):
        start = text.count("\n", 0, m.start())
        # The body: the first `{` after the signature at depth 0 of parens.
        i, depth = m.end(), 0
        while i < len(text):
            ch = text[i]
            if ch in "(<[":
                depth += 1
            elif ch in ")>]":
                depth -= 1
            elif ch == ";" and depth <= 0:
                break  # a declaration without a body
            elif ch == "{" and depth <= 0:
                break
            i += 1
        if i >= len(text) or text[i] != "{":
            continue
        j, level = i, 0
        while j < len(text):
            if text[j] == "{":
                level += 1
            elif text[j] == "}":
                level -= 1
                if level == 0:
                    break
            j += 1
        end = text.count("\n", 0, j)
        yield m.group(1), start + 1, end - start + 1


def module_of(path):
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    if rel.startswith("reports/"):
        return "reports", "reports/" + rel.split("/")[-1][:-3]
    parts = rel.split("/")[1:]
    name = parts[0][:-3] if parts[0].endswith(".rs") else parts[0]
    unit = "/".join(p[:-3] if p.endswith(".rs") else p for p in parts)
    unit = unit[:-4] if unit.endswith("/mod") else unit
    return name, unit


def layer(module, unit):
    if module in GROUND or unit.split("/")[-1] in GROUND and module != "demo":
        return 0
    if module == "scenario":
        return 1
    if module in ("check", "demo"):
        return 2 if module == "check" else 1
    if module in BACKENDS:
        return 2
    if module == "fault":
        return 3
    return 4


def imports(path, units):
    """Units this file refers to through `crate::`/`super::` paths or `use`."""
    text = blank(open(path).read())
    module, unit = module_of(path)
    found = set()
    for m in re.finditer(r"\bcrate::(\w+)(?:::(\w+))?", text):
        a, b = m.group(1), m.group(2)
        cand = f"{a}/{b}" if b and f"{a}/{b}" in units else a
        found.add(cand)
    for m in re.finditer(r"\bcrashlab_reports\b|\breports::", text):
        found.add("reports")
    base = unit.rsplit("/", 1)[0] if "/" in unit else unit
    is_mod = path.endswith("mod.rs") or path.endswith("lib.rs")
    for m in re.finditer(r"\bsuper::(\w+)", text):
        parent = base if not is_mod else (unit.rsplit("/", 1)[0] if "/" in unit else "")
        cand = f"{parent}/{m.group(1)}" if parent else m.group(1)
        found.add(cand if cand in units else (parent or m.group(1)))
    if is_mod:
        for m in re.finditer(r"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            pass  # declaring a child is not depending on it
        for m in re.finditer(r"\bself::(\w+)", text):
            found.add(f"{unit}/{m.group(1)}")
    return {f for f in found if f != unit and f in units or f.split("/")[0] in units}


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    files = sorted(rust_files())
    fns = []
    for f in files:
        for name, line, length in functions(f):
            fns.append((length, os.path.relpath(f, ROOT), line, name))
    fns.sort(reverse=True)
    print(f"functions: {len(fns)}; over 50 lines: {sum(1 for x in fns if x[0] > 50)}; "
          f"over 100: {sum(1 for x in fns if x[0] > 100)}; over 120: {sum(1 for x in fns if x[0] > 120)}")
    for length, f, line, name in fns[:10]:
        print(f"  {length:4} lines  {name}  ({f}:{line})")

    units = {}
    for f in files:
        m, u = module_of(f)
        units[u] = f
    unit_names = set(units) | {module_of(f)[0] for f in files}
    file_graph = defaultdict(set)
    arrows = set()
    for u, f in units.items():
        m = module_of(f)[0]
        for dep in imports(f, unit_names):
            dm = dep.split("/")[0]
            if dep in units:
                file_graph[u].add(dep)
            elif dm in units:
                file_graph[u].add(dm)
            if dm != m:
                arrows.add(((m, u), (dm, dep)))
    mod_arrows = {}
    for (m, u), (dm, dep) in arrows:
        key = (m, dm)
        against = layer(dm, dep) > layer(m, u) or (m in ("check", "reports") and dm in BACKENDS | {"runner", "fault"})
        mod_arrows.setdefault(key, []).append((u, dep, against))
    against = {k: v for k, v in mod_arrows.items() if any(a for *_, a in v)}
    print(f"module arrows: {len(mod_arrows)}; against the flow: {len(against)}")
    for (a, b), v in sorted(against.items()):
        print(f"  {a} -> {b}: " + ", ".join(f"{u}->{d}" for u, d, x in v if x))
    cycles = sccs({k: v for k, v in file_graph.items()})
    print(f"file import cycles: {len(cycles)}")
    for c in cycles:
        print("  " + " <-> ".join(c))

    if CHECK:
        long = [(n, f, l) for n, f, _, l in [(x[0], x[1], x[2], x[3]) for x in fns] if n > 120 and (f, l) not in ALLOWED]
        problems = [f"{l} in {f}: {n} lines" for n, f, l in long]
        problems += [f"{a} -> {b} runs against the flow" for (a, b) in against]
        problems += [" <-> ".join(c) + " import each other" for c in cycles]
        for p in problems:
            print("SHAPE: " + p)
        sys.exit(1 if problems else 0)

    kinds = ["kill", "pause", "restart", "corrupt", "stale-lock", "lose-unsynced", "blackhole", "latency", "partition", "disconnect", "command"]
    print("places naming a fault kind (string literals in non-test code):")
    for k in kinds:
        n, where = 0, set()
        for f in files:
            src = open(f).read()
            body = src.split("#[cfg(test)]")[0]
            c = len(re.findall(r'"' + re.escape(k) + r'"', body))
            if c:
                n += c; where.add(os.path.relpath(f, ROOT))
        print(f"  {k:14} {n:3} literals in {len(where)} files")


main()
