"""The documentation is enforced: every hook is documented with its exact signature, every hook is exercised by a
test, and the links between the docs resolve (datasette's ``test_plugin_hooks_are_documented`` and
``test_plugin_hooks_have_tests``)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

import mmframe._hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS_DOC = DOCS / "hooks.md"
THIS_FILE = Path(__file__).resolve()


def _hookspecs() -> dict[str, inspect.Signature]:
    pm = pluggy.PluginManager("mmframe")
    pm.add_hookspecs(mmframe._hookspecs)
    specs = {}
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None:
            specs[name] = inspect.signature(caller.spec.function)
    return specs


HOOKSPECS = _hookspecs()
HOOK_NAMES = sorted(HOOKSPECS)


def test_the_hookspecs_are_found() -> None:
    declared = sorted(
        name for name, value in vars(mmframe._hookspecs).items() if callable(value) and hasattr(value, "mmframe_spec")
    )
    assert declared
    assert declared == HOOK_NAMES


def signature_string(name: str) -> str:
    """``name(arg1, arg2)``: the hook's name and its parameter names, as the hooks reference shows them."""
    return f"{name}({', '.join(HOOKSPECS[name].parameters)})"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented(name: str) -> None:
    text = HOOKS_DOC.read_text(encoding="utf-8")
    heading = re.compile(rf"^#+\s+`?{re.escape(name)}`?\s*$", re.MULTILINE)
    assert heading.search(text), f"docs/hooks.md has no heading for the hook {name}"
    signature = signature_string(name)
    assert signature in text, f"docs/hooks.md does not show the signature {signature}"


def _test_files() -> list[Path]:
    """Every Python file of the core's tests and of the example and plugin distributions' tests."""
    folders = [ROOT / "tests", *ROOT.glob("examples/*/tests"), *ROOT.glob("plugins/*/tests")]
    return sorted(path for folder in folders for path in folder.rglob("*.py") if path.resolve() != THIS_FILE)


def _plugin_modules() -> dict[str, Path]:
    """The plugin modules that ship with mmframe and its distributions, by dotted module name."""
    modules = {}
    for path in sorted(ROOT.glob("mmframe/_default_plugins/*.py")):
        if path.stem != "__init__":
            modules[f"mmframe._default_plugins.{path.stem}"] = path
    for path in sorted([*ROOT.glob("examples/*/mmframe_*/*.py"), *ROOT.glob("plugins/*/mmframe_*/*.py")]):
        package = path.parent.name
        modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def implements(text: str, name: str) -> bool:
    """True if *text* has a function *name* under an ``@hookimpl`` decorator."""
    pattern = rf"@(?:[\w.]+\.)?hookimpl\b[^\n]*\n(?:[ \t]*@[^\n]*\n)*[ \t]*def {re.escape(name)}\("
    return re.search(pattern, text) is not None


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_has_a_test(name: str) -> None:
    tests = {path: path.read_text(encoding="utf-8") for path in _test_files()}
    if any(implements(text, name) for text in tests.values()):
        return
    exercised = [
        module
        for module, path in _plugin_modules().items()
        if implements(path.read_text(encoding="utf-8"), name)
        and any(re.search(rf"\b{re.escape(module)}\b", text) for text in tests.values())
    ]
    assert exercised, (
        f"no test implements the hook {name} (an @hookimpl def {name}( in a test file), and no plugin module that "
        "implements it is imported by a test"
    )


def _linking_files() -> list[Path]:
    files = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        files.append(readme)
    return files


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)  # links in code don't count
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]


def anchors(path: Path) -> set[str]:
    """The anchors of *path*'s headings, as GitHub makes them (``## Fault isolation`` → ``fault-isolation``)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    found: set[str] = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_docs_exist() -> None:
    assert {"index.md", "architecture.md", "writing-plugins.md", "hooks.md"} <= {p.name for p in DOCS.glob("*.md")}


@pytest.mark.parametrize("path", _linking_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_docs_links_resolve(path: Path) -> None:
    broken = []
    for target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        missing_anchor = bool(anchor) and linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked)
        if not linked.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} has links to files or headings that do not exist: {broken}"
