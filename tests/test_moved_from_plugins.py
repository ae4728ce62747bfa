"""Tests of core internals that used to live in the plugins' tests (which may import only the public surface)."""

from __future__ import annotations

import decimal

from mmframe._engine.manager import _describe


def test_a_decimal_failure_is_described_not_listed() -> None:
    """From mmframe-external-index-follow's tests/test_config_hostile.py: a market failed by a decimal signal says
    what it means, not ``[<class 'decimal.InvalidOperation'>]``."""
    text = _describe(decimal.InvalidOperation([decimal.InvalidOperation]))
    assert "[<class" not in text and text.startswith("InvalidOperation: a value too large or too precise")
