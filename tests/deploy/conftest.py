"""Fixtures for tests/deploy (helpers live in deploy_helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_helpers import OVERLAYS, render_overlay


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> list[dict[str, Any]]:
    return render_overlay(overlay)
