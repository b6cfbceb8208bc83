"""The display's layers point one way (docs/architecture.md, "Layers"): the
toolkit (ui, screens, pinflow) imports no application code, the menu
imports no feature (their entries come through the registry), the Web
Admin's menu code imports nothing back from its handle, and App names no
feature outside FEATURES. Read from the sources' import statements,
whether at the top or inside a function (a lazy import is still a
dependency)."""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "firmware" / "lib"


def imports(mod):
    """The meter.* modules that `mod` (dotted) imports, anywhere in it."""
    path = LIB / (mod.replace(".", "/") + ".py")
    if not path.exists():
        path = LIB / mod.replace(".", "/") / "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                sub = node.module + "." + a.name
                is_mod = (LIB / (sub.replace(".", "/") + ".py")).exists() or \
                    (LIB / sub.replace(".", "/")).is_dir()
                out.add(sub if is_mod else node.module)
    return {m for m in out if m.startswith("meter")}


TOOLKIT = {"meter.ui", "meter.screens", "meter.pinflow", "meter.buttons", "meter.text"}
# What the toolkit may use: itself and the core below it.
BELOW = TOOLKIT | {"meter", "meter.log", "meter.errors", "meter.board", "meter.board.base"}
FEATURES = {"meter.web", "meter.web.menu", "meter.web.admin", "meter.api", "meter.uplink",
            "meter.lock", "meter.lockfeature", "meter.otafeature", "meter.otastatus"}


def test_display_toolkit_imports_no_application_code():
    for mod in sorted(TOOLKIT):
        bad = imports(mod) - BELOW
        assert not bad, "%s is display toolkit but imports %s (pass it in instead)" % (
            mod, sorted(bad))


def test_menu_and_screens_import_no_feature():
    for mod in ("meter.menu", "meter.home") + tuple(sorted(TOOLKIT)):
        bad = imports(mod) & FEATURES
        assert not bad, "%s imports the feature(s) %s: entries come through the " \
            "registry (app.add_menu)" % (mod, sorted(bad))


def test_web_menu_imports_nothing_back_from_the_web_handle():
    bad = imports("meter.web.menu") & {"meter.web"}
    assert not bad, "meter.web.menu imports meter.web back (an import circle): " \
        "the handle passes what it needs"


def test_app_names_no_feature_outside_its_list():
    src = (LIB / "meter" / "app.py").read_text()
    bad = imports("meter.app") & FEATURES
    assert not bad, "App imports features directly: %s; list them in FEATURES" % sorted(bad)
    for word in ("hasattr(", "getattr("):
        assert word not in src, "app.py probes with %s; features register instead" % word
