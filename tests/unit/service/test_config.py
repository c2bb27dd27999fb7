"""Settings: environment, the optional YAML file, and what start-up prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdmi.service.auth import InsecureBindError, check_bind
from tdmi.service.cli import main
from tdmi.service.config import Settings


def test_environment_and_yaml_file_with_environment_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file = tmp_path / "tdmi.yaml"
    settings_file.write_text("max_batch: 8\nmodels: [tdmi-tiny=/w/a.pt]\nstaleness_ms: 250\n")
    monkeypatch.setenv("TDMI_SETTINGS_FILE", str(settings_file))
    monkeypatch.setenv("TDMI_MAX_BATCH", "32")
    settings = Settings()
    assert settings.max_batch == 32  # the environment overrides the file
    assert settings.models == ["tdmi-tiny=/w/a.pt"]
    assert settings.staleness_ms == 250


def test_the_data_directory_defaults_to_the_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TDMI_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().data_dir == tmp_path / "xdg" / "tdmi"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for ignored in ("", "relative/dir"):  # unset, or relative: XDG says to use the default
        monkeypatch.setenv("XDG_DATA_HOME", ignored)
        assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "tdmi"
    monkeypatch.setenv("TDMI_DATA_DIR", "/data")
    assert Settings().data_dir == Path("/data")
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "~/.local/share/tdmi" in " ".join(capsys.readouterr().out.split())


def test_a_missing_settings_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDMI_SETTINGS_FILE", "/nonexistent/tdmi.yaml")
    with pytest.raises(FileNotFoundError, match="TDMI_SETTINGS_FILE"):
        Settings()


def test_api_keys_are_counted_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDMI_API_KEYS", '["top-secret-1", "top-secret-2"]')
    shown = Settings().public()
    assert shown["api_keys"] == "2 configured"
    assert "top-secret" not in str(shown)


@pytest.mark.parametrize(
    ("host", "keys", "insecure", "refused"),
    [
        ("127.0.0.1", [], False, False),
        ("localhost", [], False, False),
        ("::1", [], False, False),
        ("0.0.0.0", [], False, True),
        ("192.168.1.5", [], False, True),
        ("0.0.0.0", ["k"], False, False),
        ("0.0.0.0", [], True, False),
    ],
)
def test_bind_guard(host: str, keys: list[str], insecure: bool, refused: bool) -> None:
    settings = Settings(host=host, api_keys=keys, insecure=insecure)
    if refused:
        with pytest.raises(InsecureBindError, match="without API keys"):
            check_bind(settings)
    else:
        check_bind(settings)
