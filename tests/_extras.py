"""Skips for tests that need a module of the test extra, which XBP_MIN_DEPS=1 ci/test leaves out."""

from __future__ import annotations

import importlib.util

import pytest


def missing(module: str) -> str:
    """Why a test of the test extra's `module` is skipped where it is absent."""
    return (f'{module} is not installed: it comes with the test extra (pip install -e ".[test]"), '
            "which XBP_MIN_DEPS=1 ci/test (the lowest declared versions, backends/minimum.txt) leaves out")


def needs_test_extra(module: str) -> pytest.MarkDecorator:
    """Skip, saying why, where `module` is absent."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=missing(module))
