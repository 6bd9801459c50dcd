"""The header's budget part: absent under 80%, a warning from 80%, "reached" at 100%, and a
``[budget]`` typo said rather than hidden (on the TUI campaign, both store engines)."""

from __future__ import annotations

import pytest
from tui_campaign import T0

from helm.models.tables import Job
from helm.tui import data
from helm.tui.fmt import Palette
from helm.tui.rows import header_text
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def _header(ws: Workspace) -> str:
    snap = data.load_snapshot(ws, clock=lambda: T0)
    return header_text(snap, Palette.from_variables({}), rate=1, paused=False, marked=None).plain


def test_budget_in_the_header(campaign: Workspace) -> None:
    with campaign.store.write() as s:  # an ended job that held 9 GPU-hours at $2/GPU-h
        s.add(Job(id=40, state="succeeded", gpus=1, gpu_seconds=9 * 3600.0, cost=18.0))
    spent = data.load_snapshot(campaign, clock=lambda: T0).usage
    assert spent.gpu_seconds >= 9 * 3600
    assert "budget" not in _header(campaign)  # no [budget]: nothing to say
    campaign.config_path.write_text("[budget]\ngpu_hours = 1000\n")
    assert "budget" not in _header(campaign)  # well under 80%
    hours = spent.gpu_seconds / 3600
    campaign.config_path.write_text(f"[budget]\ngpu_hours = {hours / 0.9:.4f}\n")
    assert "budget 90%" in _header(campaign)
    campaign.config_path.write_text(f"[budget]\ngpu_hours = {hours / 2:.4f}\n")
    assert "budget reached" in _header(campaign)
    campaign.config_path.write_text("[budget]\ngpu_hourz = 1\n")
    assert "budget:" in _header(campaign)  # the typo is shown, not taken as no budget
