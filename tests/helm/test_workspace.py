"""The campaign folder: its default location and its campaign id."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm.workspace import Workspace, default_home


def test_default_home_follows_env_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HELM_HOME", str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    monkeypatch.delenv("HELM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "helm"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_home() == tmp_path / "user" / ".local" / "share" / "helm"


def test_campaign_id_is_stable_and_distinct(tmp_path: Path) -> None:
    a = Workspace(tmp_path / "a").ensure()
    b = Workspace(tmp_path / "b").ensure()
    assert a.campaign_id == Workspace(tmp_path / "a").campaign_id  # made once, then read
    assert a.campaign_id != b.campaign_id
    assert len(a.campaign_id) == 12 and int(a.campaign_id, 16) >= 0
    assert list((tmp_path / "a").glob("campaign.id.*")) == []  # no temp file left behind
