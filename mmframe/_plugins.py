"""The plugin manager: hook specs, entry points, the built-in plugins, and typed registries over the hooks.

Plugins are found through the entry-point group ``mmframe``. ``MMFRAME_LOAD_PLUGINS`` restricts which
distributions are loaded (a comma-separated list of distribution or entry-point names; empty: none). The
built-in plugins (the ``paper`` sink and the ``sim`` feed) are ordinary plugins registered after the external
ones, through the same hooks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
import pluggy

from . import _hookspecs
from ._errors import PluginError, UnknownPlugin
from .protocols import Named

__all__ = [
    "DEFAULT_PLUGINS",
    "PluginInfo",
    "Registry",
    "get_feeds",
    "get_plugin_manager",
    "get_routes",
    "get_sinks",
    "get_strategies",
    "list_plugins",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "mmframe"
ALLOW_LIST_ENV = "MMFRAME_LOAD_PLUGINS"
#: The built-in plugins by the name they are registered (and listed) under, and the private module that holds each.
DEFAULT_PLUGINS = {
    "mmframe.default_plugins.paper": "mmframe._default_plugins.paper",
    "mmframe.default_plugins.sim": "mmframe._default_plugins.sim",
    "mmframe.bus.feed": "mmframe._bus.feed",
}

T = TypeVar("T")


def make_plugin_manager(*, load_entrypoints: bool = True, plugins: tuple[object, ...] = ()) -> pluggy.PluginManager:
    """A new plugin manager: specs, entry-point plugins (allow-list permitting), built-ins, then *plugins*.

    Fails with :class:`PluginError` if any plugin implements a hook that does not exist.
    """
    pm = pluggy.PluginManager("mmframe")
    pm.add_hookspecs(_hookspecs)
    if load_entrypoints:
        _load_entrypoints(pm)
    try:
        for name, module_name in DEFAULT_PLUGINS.items():
            pm.register(importlib.import_module(module_name), name=name)
        for plugin in plugins:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    allow = os.environ.get(ALLOW_LIST_ENV)
    if allow is not None:
        allowed = {name.strip() for name in allow.split(",") if name.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = ep.dist.name if ep.dist is not None else ""
            if ep.name not in allowed and dist_name not in allowed:
                pm.set_blocked(ep.name)  # load_setuptools_entrypoints skips blocked names
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc


_pm: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, made on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


class Registry(dict[str, Any]):
    """Name → registered class, remembering which plugin registered each name."""

    kind: str = "component"

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.registered_by: dict[str, str] = {}

    def get_or_raise(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            raise UnknownPlugin(f"no {self.kind} named {name!r} is installed (installed: {known})") from None


def _collect(hook: pluggy.HookCaller, kind: str, check: Callable[[Any], None]) -> Registry:
    registry = Registry(kind)
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(component: Any, *, name: str | None = None, _plugin: str = plugin_name) -> None:
            reg_name = name if name is not None else (component.name if isinstance(component, Named) else "")
            if not isinstance(reg_name, str) or not reg_name:
                raise PluginError(f"plugin {_plugin!r} registered a {kind} without a name: {component!r}")
            check(component)
            if reg_name in registry:
                raise PluginError(
                    f"{kind} {reg_name!r} is registered twice: by {registry.registered_by[reg_name]!r} "
                    f"and by {_plugin!r}"
                )
            registry[reg_name] = component
            registry.registered_by[reg_name] = _plugin

        impl.function(register)
    return registry


@runtime_checkable
class _Configured(Protocol):
    """A component class with the attrs class its configuration mapping is structured into."""

    Config: type


def _needs_config(kind: str) -> Callable[[Any], None]:
    def check(component: Any) -> None:
        if not isinstance(component, type):
            raise PluginError(f"a {kind} must be registered as a class, got {component!r}")
        config = component.Config if isinstance(component, _Configured) else None
        if not (isinstance(config, type) and attrs.has(config)):
            raise PluginError(f"{kind} class {component.__qualname__} needs a Config attrs class")

    return check


def get_strategies(pm: pluggy.PluginManager | None = None) -> Registry:
    """Every registered strategy class by name."""
    from .protocols import Strategy

    base_check = _needs_config("strategy")

    def check(component: Any) -> None:
        base_check(component)
        if not issubclass(component, Strategy):
            raise PluginError(f"strategy class {component.__qualname__} must subclass mmframe.Strategy")

    return _collect((pm or get_plugin_manager()).hook.register_strategies, "strategy", check)


def get_feeds(pm: pluggy.PluginManager | None = None) -> Registry:
    """Every registered feed class by name."""
    return _collect((pm or get_plugin_manager()).hook.register_feeds, "feed", _needs_config("feed"))


def get_sinks(pm: pluggy.PluginManager | None = None) -> Registry:
    """Every registered sink class by name."""
    return _collect((pm or get_plugin_manager()).hook.register_sinks, "sink", _needs_config("sink"))


@attrs.frozen
class Route:
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...]
    plugin: str


def get_routes(pm: pluggy.PluginManager | None = None) -> list[Route]:
    """Every control-API route that plugins registered. A path and method registered twice is an error."""
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for impl in (pm or get_plugin_manager()).hook.register_routes.get_hookimpls():

        def register(
            path: str, endpoint: Callable[..., Any], *, methods: tuple[str, ...] = ("GET",), _p: str = impl.plugin_name
        ) -> None:
            if not path.startswith("/"):
                raise PluginError(f"plugin {_p!r} registered route {path!r}: paths start with '/'")
            if not callable(endpoint):
                raise PluginError(f"plugin {_p!r} registered route {path!r} with a non-callable endpoint")
            upper = tuple(m.upper() for m in methods)
            for method in upper:
                if (path, method) in seen:
                    first = seen[path, method]
                    raise PluginError(f"route {method} {path} is registered twice: by {first!r} and {_p!r}")
                seen[path, method] = _p
            routes.append(Route(path, endpoint, upper, _p))

        impl.function(register)
    return routes


@attrs.frozen
class PluginInfo:
    name: str
    version: str | None
    hooks: tuple[str, ...]
    distribution: str | None
    builtin: bool


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Every plugin the manager knows, with its distribution's version and the hooks it implements."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    own_version = _version("mmframe")
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(hc.name for hc in pm.get_hookcallers(plugin) or ()))
        dist = dists.get(id(plugin))
        builtin = name in DEFAULT_PLUGINS
        infos.append(
            PluginInfo(
                name=name,
                version=dist.version if dist is not None else (own_version if builtin else None),
                hooks=hooks,
                distribution=dist.name if dist is not None else ("mmframe" if builtin else None),
                builtin=builtin,
            )
        )
    return sorted(infos, key=lambda info: (info.builtin, info.name))


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
