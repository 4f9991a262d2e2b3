"""Every ARTLAB_* setting is read in artlab/paths.py, and `python -m artlab settings` lists them."""

import re
from pathlib import Path

import pytest

from artlab import paths
from artlab.cli import main

PACKAGE = Path(__file__).resolve().parents[1] / "artlab"


def test_settings_lists_values_and_hides_the_password(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ARTLAB_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "secret")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "g") in out and "secret" not in out and "(hidden)" in out
    assert all(f"ARTLAB_{name}" in out for name in paths.SETTINGS)


def test_an_unknown_setting_is_a_programming_error():
    with pytest.raises(KeyError):
        paths.setting("NOT_A_SETTING")


def test_no_module_but_paths_reads_an_artlab_variable():
    readers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name != "paths.py" and re.search(r"environ(\.get)?\(?\[?[\"']ARTLAB_", p.read_text())]
    assert readers == []


def test_folders_follow_the_platform_and_the_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("ARTLAB_MODELS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.models_dir() == tmp_path / "xdg" / "artlab" / "models"
    assert paths.models_dir(tmp_path / "given") == tmp_path / "given"
