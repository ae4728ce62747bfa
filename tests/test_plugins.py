"""The plugin manager: entry points, the allow-list, built-ins, duplicates, misspelt hooks, and the hooks that
extend the control API and the command line."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

import mmframe
from mmframe import PluginError, Strategy, hookimpl
from mmframe import _plugins as plugins_module
from mmframe._default_plugins.paper import PaperSink
from mmframe._default_plugins.sim import SimFeed
from mmframe._plugins import (
    get_feeds,
    get_routes,
    get_sinks,
    get_strategies,
    list_plugins,
    make_plugin_manager,
)

from .engine_helpers import Ladder

EXAMPLE_INSTALLED = any(ep.name == "fixed_spread" for ep in importlib.metadata.entry_points(group="mmframe"))


def test_builtins_are_registered_through_the_hooks() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    assert get_sinks(pm)["paper"] is PaperSink
    assert get_feeds(pm)["sim"] is SimFeed
    infos = {i.name: i for i in list_plugins(pm)}
    assert infos["mmframe.default_plugins.paper"].builtin
    assert infos["mmframe.default_plugins.paper"].hooks == ("register_sinks",)
    assert infos["mmframe.default_plugins.sim"].version == mmframe.__version__


@pytest.mark.skipif(not EXAMPLE_INSTALLED, reason="the example plugin is not installed")
def test_the_example_plugin_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMFRAME_LOAD_PLUGINS", raising=False)
    pm = make_plugin_manager()
    infos = {i.name: i for i in list_plugins(pm)}
    example = infos["fixed_spread"]
    assert example.distribution == "mmframe-fixed-spread" and not example.builtin
    assert example.version == importlib.metadata.version("mmframe-fixed-spread")
    assert "register_strategies" in example.hooks
    assert "fixed_spread" in get_strategies(pm)


@pytest.mark.skipif(not EXAMPLE_INSTALLED, reason="the example plugin is not installed")
@pytest.mark.parametrize(
    ("allow", "loaded"), [("", False), ("fixed_spread", True), ("mmframe-fixed-spread", True), ("other", False)]
)
def test_the_allow_list_env_var(monkeypatch: pytest.MonkeyPatch, allow: str, loaded: bool) -> None:
    monkeypatch.setenv("MMFRAME_LOAD_PLUGINS", allow)
    pm = make_plugin_manager()
    assert ("fixed_spread" in get_strategies(pm)) is loaded
    assert "paper" in get_sinks(pm)  # built-ins are always there


def test_duplicate_names_are_refused_with_both_plugins_named() -> None:
    class A:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(Ladder)

    class B:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(Ladder)

    pm = make_plugin_manager(load_entrypoints=False, plugins=(A(), B()))
    with pytest.raises(PluginError, match="'test_ladder' is registered twice"):
        get_strategies(pm)


def test_bad_registrations_are_refused() -> None:
    class NoConfig(Strategy):
        name = "no_config"

    class NotAStrategy:
        name = "nope"

        class Config:
            pass

    class ConfigInstance(Strategy):  # an attrs instance, not the class: structuring into it would fail later
        name = "config_instance"
        Config = Ladder.Config()  # type: ignore[assignment]

    bad_ones = [
        (NoConfig, "needs a Config attrs class"),
        (ConfigInstance, "needs a Config attrs class"),
        (Ladder(Ladder.Config(), None), "as a class"),  # type: ignore[arg-type]
    ]
    for bad, message in bad_ones:

        class P:
            @hookimpl
            def register_strategies(self, register: Any, _bad: Any = bad) -> None:
                register(_bad)

        with pytest.raises(PluginError, match=message):
            get_strategies(make_plugin_manager(load_entrypoints=False, plugins=(P(),)))

    class Sink:
        @hookimpl
        def register_sinks(self, register: Any) -> None:
            register(PaperSink, name="")

    with pytest.raises(PluginError, match="without a name"):
        get_sinks(make_plugin_manager(load_entrypoints=False, plugins=(Sink(),)))


def test_a_misspelt_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def register_stratgies(self, register: Any) -> None:
            pass

    with pytest.raises(PluginError, match="register_stratgies"):
        make_plugin_manager(load_entrypoints=False, plugins=(Typo(),))


def test_unknown_component_names_list_what_is_installed() -> None:
    with pytest.raises(mmframe.UnknownPlugin, match=r"no sink named 'http' is installed \(installed: paper\)"):
        get_sinks(make_plugin_manager(load_entrypoints=False)).get_or_raise("http")


async def _hello(request: Any) -> str:
    return "hello"


class RoutesPlugin:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        register("/api/v1/hello", _hello, methods=("get", "POST"))


def test_register_routes_collects_routes_and_refuses_clashes() -> None:
    pm = make_plugin_manager(load_entrypoints=False, plugins=(RoutesPlugin(),))
    [route] = get_routes(pm)
    assert route.path == "/api/v1/hello" and route.methods == ("GET", "POST") and route.endpoint is _hello

    class Clash:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("/api/v1/hello", _hello, methods=("POST",))

    with pytest.raises(PluginError, match="POST /api/v1/hello is registered twice"):
        get_routes(make_plugin_manager(load_entrypoints=False, plugins=(RoutesPlugin(), Clash())))

    class Relative:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("hello", _hello)

    with pytest.raises(PluginError, match="start with '/'"):
        get_routes(make_plugin_manager(load_entrypoints=False, plugins=(Relative(),)))


class CommandsPlugin:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.argument("name")
        def greet(name: str) -> None:
            """Say hello."""
            click.echo(f"hello {name}")


def test_register_commands_adds_a_sub_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmframe import _cli as cli_module

    pm = make_plugin_manager(load_entrypoints=False, plugins=(CommandsPlugin(),))
    monkeypatch.setattr(plugins_module, "_pm", pm)
    monkeypatch.setattr(cli_module, "cli", click.Group("mmframe", commands=dict(cli_module.cli.commands)))
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["greet", "world"])
    assert exit_info.value.code == 0
    result = CliRunner().invoke(cli_module.cli, ["greet", "plugins"])
    assert result.output == "hello plugins\n"


def test_plugins_command_lists_plugins_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmframe import _cli as cli_module

    monkeypatch.setattr(plugins_module, "_pm", make_plugin_manager(load_entrypoints=False, plugins=(RoutesPlugin(),)))
    result = CliRunner().invoke(cli_module.cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = {p["name"]: p for p in json.loads(result.output)}
    assert data["mmframe.default_plugins.sim"]["hooks"] == ["register_feeds"]
    assert any(p["hooks"] == ["register_routes"] for p in data.values())
    text = CliRunner().invoke(cli_module.cli, ["plugins"]).output
    assert "mmframe.default_plugins.paper" in text and "hooks: register_sinks" in text
