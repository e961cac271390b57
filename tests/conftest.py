"""Shared fixtures."""

from __future__ import annotations

import pytest
from fakes import ReasoningScript


@pytest.fixture
def script() -> ReasoningScript:
    return ReasoningScript()
