"""Fixtures for the TUI tests: the filled campaign and an app factory (frozen clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tui_campaign import T0, fill

from helm.tui.app import HelmApp
from helm.workspace import Workspace


@pytest.fixture
def campaign(ws: Workspace) -> Workspace:
    fill(ws)
    return ws


@pytest.fixture
def make_app(campaign: Workspace) -> Callable[..., HelmApp]:
    """A HelmApp on the filled campaign with a frozen clock and no daemon."""

    def make(**kwargs: object) -> HelmApp:
        kwargs.setdefault("keymap", {})
        return HelmApp(campaign, start_daemon=False, clock=lambda: T0, **kwargs)  # type: ignore[arg-type]

    return make
