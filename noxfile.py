"""Sessions: ``nox -s tests`` (the suite, core and every plugin), ``nox -s lint`` (ruff and import-linter's contracts:
the core's layers, plugins importing only the public surface), ``nox -s bench`` (the
benchmarks, ``docs/performance.md``; never run by default)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
PLUGINS = sorted(str(p) for p in (ROOT / "plugins").glob("*/pyproject.toml"))
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*/pyproject.toml"))


def _distributions() -> list[str]:
    return [str(Path(p).parent) for p in PLUGINS + EXAMPLES]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Install the core with its test extras and every plugin and example, then run pytest."""
    session.install("-e", ".[test]", *[arg for d in _distributions() for arg in ("-e", d)])
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff, then ``lint-imports`` (``[tool.importlinter]`` in pyproject.toml), which needs the core and every plugin
    installed to see their imports."""
    session.install("ruff", "import-linter", "-e", ".", *[arg for d in _distributions() for arg in ("-e", d)])
    session.run("ruff", "check", ".")
    session.run("lint-imports", "--no-cache")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Install the core and the plugins the benchmarks drive, then run every benchmark at full size: one JSON line
    each. ``nox -s bench -- quote_path --size tiny`` passes its arguments to ``python -m bench``."""
    plugins = ROOT / "plugins"
    session.install(
        "-e", ".", "-e", str(plugins / "mmframe-external-index-follow"), "-e", str(plugins / "mmframe-match-engine")
    )
    session.run("python", "-m", "bench", *session.posargs)
