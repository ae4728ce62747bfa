"""The one cattrs converter of mmframe. Private: the rest of the world uses the functions below.

Decimals unstructure to strings (exact on the wire) and structure from strings, ints or floats (a float through
its shortest repr, so ``0.1`` from a JSON config stays ``0.1``). Configuration classes are structured with
``forbid_extra_keys``, and every error is turned into one message that names the offending key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_mutable_sequence, list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.v import format_exception

from ._errors import ConfigError
from ._models import to_decimal

T = TypeVar("T")

_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_unstructure_hook(Decimal, str)
_converter.register_structure_hook(Decimal, lambda value, _type: to_decimal(value))


def _structure_bool(value: Any, _type: type) -> bool:
    # cattrs would turn any truthy value into True ("no" -> True); a config flag must be a real boolean.
    if isinstance(value, bool):
        return value
    if value in (0, 1) and isinstance(value, int):
        return bool(value)
    raise ValueError(f"expected a boolean, got {value!r}")


def _structure_int(value: Any, _type: type) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _structure_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number, got {value!r}")
    return float(to_decimal(value))


def _structure_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _is_list_like(type_: Any) -> bool:
    """``list[X]`` and ``tuple[X, ...]``: where a string would otherwise be split into its characters."""
    if get_origin(type_) is tuple:
        args = get_args(type_)
        return len(args) == 2 and args[1] is Ellipsis
    return is_mutable_sequence(type_)


def _list_like_factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    if get_origin(type_) is tuple:
        base = homogenous_tuple_structure_factory(type_, converter)
    else:
        base = list_structure_factory(type_, converter)

    def structure(value: Any, _type: Any) -> Any:
        if isinstance(value, str | bytes | Mapping):
            raise ValueError(f"expected a list, got {type(value).__name__} {value!r}")
        return base(value, _type)

    return structure


_converter.register_structure_hook_factory(_is_list_like, _list_like_factory)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(float, _structure_float)
_converter.register_structure_hook(str, _structure_str)


def unstructure(obj: Any) -> Any:
    """Turn an attrs object into plain JSON-able data (decimals as strings, enums as their values)."""
    return _converter.unstructure(obj)


def structure(data: Any, cls: type[T]) -> T:
    """Build *cls* from plain data; raises :class:`ConfigError` naming the offending key."""
    try:
        return _converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        raise ConfigError(_describe(exc)) from None
    except (ValueError, TypeError) as exc:  # a validator or converter on the top level
        raise ConfigError(str(exc), errors=[str(exc)]) from None


def _format_exception(exc: BaseException, type_: type | None) -> str:
    # cattrs' default says "invalid value" for an attrs validator's error; ours say what is wrong, so keep them.
    if isinstance(exc, ValueError) and str(exc) and not isinstance(exc, cattrs.BaseValidationError):
        return f"invalid value: {exc}"
    return format_exception(exc, type_)


def _describe(exc: BaseException) -> str:
    messages = cattrs.transform_error(exc, path="config", format_exception=_format_exception)
    return "; ".join(messages)


def dumps(obj: Any) -> str:
    """Compact JSON of an attrs object."""
    return json.dumps(unstructure(obj), separators=(",", ":"))


def loads(text: str | bytes, cls: type[T]) -> T:
    return structure(json.loads(text), cls)
