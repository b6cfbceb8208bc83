"""The firmware's shape (issue 17): no import circles, no module over 400
lines, no hasattr() probes.

Read statically with Python's ast, so it needs no build and no simulator. A
lazy import inside a function counts like one at the top: it is still a
dependency, and a circle through it still means two modules that cannot be
understood (or unloaded, meter/memory.py) one without the other.

PENDING lists what other branches of issue 17 are still fixing, so that this
test is green on every branch meanwhile; each entry says which branch empties
it. Anything not listed fails at once: a new circle, a new big module, a new
probe.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
LIB = os.path.join(FIRMWARE, "lib")
MAX_LINES = 400

# Branch `webroutes` (issue 17: web/pages.py, web/server.py, web/admin.py
# split into route modules) has landed: nothing pending.
PENDING_WEBROUTES = {"big": set(), "cycles": set(), "hasattr": set()}
# Branch `features` (issue 17: feature registry, UI in one direction) has
# landed: nothing pending.
PENDING_FEATURES = {"big": set(), "cycles": set(), "hasattr": set()}
# OTA delivery landed on main after issue 17 was split, so none of its three
# branches owns these: otafetch checks tuning names with hasattr(Fetcher, k),
# otaupload picks readinto() or read() by probing the stream. Whoever next
# works on OTA delivery empties this.
PENDING_OTA = {"big": set(), "cycles": set(), "hasattr": set()}
PENDING = {k: PENDING_WEBROUTES[k] | PENDING_FEATURES[k] | PENDING_OTA[k] for k in PENDING_WEBROUTES}


def modules():
    """{module name: path} for firmware/lib plus boot.py and main.py."""
    found = {"boot": os.path.join(FIRMWARE, "boot.py"),
             "main": os.path.join(FIRMWARE, "main.py")}
    for d, _, files in os.walk(LIB):
        for f in files:
            if not f.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(d, f), LIB)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = os.path.join(d, f)
    return found


def _is_package(path):
    return os.path.basename(path) == "__init__.py"


def imports(name, path, known):
    """The modules of `known` that module `name` imports, anywhere in it."""
    tree = ast.parse(open(path).read(), path)
    pkg = name if _is_package(path) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                up = up[:len(up) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                # `from pkg import sub` depends on the submodule, not the package
                sub = base + "." + a.name
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def graph():
    known = modules()
    return {n: imports(n, p, known) for n, p in known.items()}


def cycles(g):
    """Every elementary circle, each once, as a tuple starting at its
    smallest member (so the same circle always reads the same)."""
    found = set()
    order = sorted(g)
    for start in order:
        # only circles whose smallest member is `start`: each found once
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in g[node]:
                if nxt == start:
                    found.add(tuple(path))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return found


def _show(c):
    return " -> ".join(c + (c[0],))


def test_the_module_walk_sees_the_firmware():
    g = graph()
    # if these go missing the other tests pass for nothing
    assert {"main", "boot", "meter.app", "meter.board", "meter.web"} <= set(g)
    assert "meter.app" in g["main"], g["main"]


def test_no_import_circles():
    found = cycles(graph())
    new = sorted(c for c in found if c not in PENDING["cycles"])
    assert not new, "import circles (lazy imports count too):\n" + "\n".join(map(_show, new))


def test_pending_circles_are_still_there():
    # a fixed circle must leave PENDING, or a new one could hide behind it
    gone = sorted(PENDING["cycles"] - cycles(graph()))
    assert not gone, "fixed, remove from PENDING:\n" + "\n".join(map(_show, gone))


def test_no_module_over_400_lines():
    big = {}
    for name, path in modules().items():
        n = sum(1 for _ in open(path))
        if n > MAX_LINES:
            big[name] = n
    new = {n: c for n, c in big.items() if n not in PENDING["big"]}
    assert not new, "modules over %d lines (split them, one job each): %s" % (
        MAX_LINES, ", ".join("%s %d" % kv for kv in sorted(new.items())))
    gone = PENDING["big"] - set(big)
    assert not gone, "no longer over %d lines, remove from PENDING: %s" % (MAX_LINES, gone)


def test_no_hasattr_probes():
    # optional board capabilities are members with defaults on the base
    # classes (meter/board/base.py), not probes
    probes = {}
    for name, path in modules().items():
        tree = ast.parse(open(path).read(), path)
        lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "hasattr"]
        if lines:
            probes[name] = lines
    new = {n: ln for n, ln in probes.items() if n not in PENDING["hasattr"]}
    assert not new, "hasattr() probes: " + "; ".join(
        "%s lines %s" % (n, ln) for n, ln in sorted(new.items()))
    gone = PENDING["hasattr"] - set(probes)
    assert not gone, "no hasattr() left, remove from PENDING: %s" % gone


@pytest.mark.parametrize("code, want", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, {("a", "b")}),
    ({"a": {"b"}, "b": {"c"}, "c": {"a", "b"}}, {("a", "b", "c"), ("b", "c")}),
    ({"a": {"b"}, "b": set()}, set()),
])
def test_cycle_finder(code, want):
    assert cycles(code) == want
