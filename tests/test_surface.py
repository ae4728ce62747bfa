"""The drawn plugin surface: docs/api.md lists exactly what the public modules export, plugins and examples import
nothing else, and import-linter's contracts (pyproject.toml) hold and can fail."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
API_DOC = ROOT / "docs" / "api.md"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: The modules a plugin author may import. Everything else under ``mmframe`` starts with an underscore.
PUBLIC_MODULES = (
    "mmframe",
    "mmframe.book",
    "mmframe.config",
    "mmframe.feedtools",
    "mmframe.logs",
    "mmframe.protocols",
    "mmframe.sinktools",
    "mmframe.testing",
)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _contract(contract_id: str) -> dict:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["id"] == contract_id)


def documented() -> dict[str, list[str]]:
    """``{module: [names]}`` from docs/api.md: a ``## `module``` heading, then one ``- `name``` bullet per name."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in API_DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `([\w.]+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
            continue
        if line.startswith("## "):
            current = None
            continue
        item = re.match(r"^- `([\w]+)`", line)
        if item and current is not None:
            current.append(item.group(1))
    return sections


def top_level_modules() -> list[str]:
    """Every module and package directly under ``mmframe/``."""
    names = []
    for path in sorted((ROOT / "mmframe").iterdir()):
        if path.name == "__init__.py" or path.name.startswith("."):
            continue
        if path.suffix == ".py":
            names.append(f"mmframe.{path.stem}")
        elif path.is_dir() and (path / "__init__.py").exists():
            names.append(f"mmframe.{path.name}")
    return names


def test_every_module_is_public_by_name_or_private_by_underscore() -> None:
    for name in top_level_modules():
        short = name.split(".")[1]
        assert short.startswith("_") or name in PUBLIC_MODULES, f"{name}: public modules are listed in docs/api.md"
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert isinstance(module.__all__, list | tuple) and module.__all__, name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_api_doc_lists_exactly_the_exported_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    sections = documented()
    assert module_name in sections, f"docs/api.md has no section for {module_name}"
    listed = sections[module_name]
    assert len(listed) == len(set(listed)), f"{module_name}: a name is listed twice in docs/api.md"
    exported = set(module.__all__) - {"__version__"}
    assert set(listed) == exported, (
        f"{module_name}: docs/api.md and __all__ differ; only in __all__: {sorted(exported - set(listed))}, "
        f"only in the doc: {sorted(set(listed) - exported)}"
    )
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names {name}, which it does not define"


def test_api_doc_documents_no_other_module() -> None:
    assert set(documented()) == set(PUBLIC_MODULES)


def test_the_forbidden_contract_covers_every_private_module() -> None:
    forbidden = set(_contract("public")["forbidden_modules"])
    private = {name for name in top_level_modules() if name.split(".")[1].startswith("_")}
    assert private <= forbidden, f"add to the 'public' contract in pyproject.toml: {sorted(private - forbidden)}"


def test_the_contracts_cover_every_plugin_and_example_package() -> None:
    packages = sorted(p.name for p in ROOT.glob("*/*/mmframe_*") if p.is_dir() and (p / "__init__.py").exists())
    assert packages, "no plugin packages found"
    config = _pyproject()["tool"]["importlinter"]
    assert set(packages) <= set(config["root_packages"])
    assert set(packages) <= set(_contract("public")["source_modules"])


def test_the_architecture_picture_shows_the_layers_contract() -> None:
    """docs/architecture.md's "Layers" picture names every module of the layers contract, in the same order."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("## Layers"):text.index("## The path of a tick")]
    picture = section[section.index("```"):section.rindex("```")]
    layers = _contract("layers")["layers"]
    positions = []
    for layer in layers:
        for module in re.split(r"[|:]", layer):
            name = module.strip()
            short = name.split(".", 1)[1]
            found = re.search(rf"(?<![\w.])(mmframe\.)?{re.escape(short)}(?![\w.])", picture)
            assert found, f"{name} (layers contract) is missing from the picture in docs/architecture.md"
        positions.append(min(re.search(rf"(?<![\w.])(mmframe\.)?{re.escape(m.strip().split('.', 1)[1])}(?![\w.])",
                                       picture).start() for m in re.split(r"[|:]", layer)))
    assert positions == sorted(positions), "the picture lists the layers in another order than the contract"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_plugin_and_example_tests_import_only_the_public_surface() -> None:
    """import-linter sees the plugin packages; their tests are not packages, so this reads every file of every
    distribution under plugins/ and examples/ (tests included)."""
    offenders = []
    for path in sorted([*ROOT.glob("plugins/*/**/*.py"), *ROOT.glob("examples/*/**/*.py")]):
        for line, name in _imported_modules(path):
            parts = name.split(".")
            if parts[0] == "mmframe" and len(parts) > 1 and parts[1].startswith("_"):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert offenders == []


def _lint_imports(config: Path, *, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(config)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT / "pyproject.toml", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_plugin_reaching_into_the_engine_breaks_the_contract(tmp_path: Path) -> None:
    """The 'public' contract's forbidden modules as pyproject.toml states them, applied to a plugin package that
    imports a private module: lint-imports must fail and name the import."""
    intruder = tmp_path / "src" / "mmframe_intruder"
    intruder.mkdir(parents=True)
    (intruder / "__init__.py").write_text(
        "from mmframe import hookimpl\nfrom mmframe._engine.market import MarketRunner\n", encoding="utf-8"
    )
    forbidden = _contract("public")["forbidden_modules"]
    lines = [
        "[importlinter]", "root_packages =", "    mmframe", "    mmframe_intruder", "",
        "[importlinter:contract:public]", "name = plugins import only the public surface", "type = forbidden",
        "source_modules =", "    mmframe_intruder", "forbidden_modules =", *[f"    {m}" for m in forbidden],
        "allow_indirect_imports = true", "",
    ]  # fmt: skip
    config = tmp_path / "setup.cfg"
    config.write_text("\n".join(lines), encoding="utf-8")
    result = _lint_imports(config, cwd=tmp_path, pythonpath=str(tmp_path / "src"))
    assert result.returncode != 0, result.stdout
    assert "mmframe_intruder is not allowed to import mmframe._engine" in result.stdout
    assert "mmframe_intruder -> mmframe._engine.market" in result.stdout
