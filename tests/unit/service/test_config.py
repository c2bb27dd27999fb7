"""Settings: environment, the optional YAML file, renamed names, what start-up prints, and
where settings are built (the order of flags, environment and file: test_settings_flags)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from tdmi.service import config
from tdmi.service.auth import InsecureBindError, check_bind
from tdmi.service.cli import main
from tdmi.service.config import RENAMED, Settings

ROOT = Path(config.__file__).parents[2]  # the checkout (or the installed tree) holding tdmi/
# where settings are built: the commands (`tdmi serve|worker` through their flags, `tdmi weights`)
# and an app asked for without them; everything else is handed its settings
EDGES = {"tdmi/service/settings_flags.py", "tdmi/service/weights/cli.py", "tdmi/service/main.py"}


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


def test_the_log_level_is_read_in_either_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDMI_LOG_LEVEL", "DEBUG")
    assert Settings().log_level == "debug"
    assert Settings(log_level="Warning").log_level == "warning"


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


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_a_renamed_setting_is_read_under_its_old_name_with_a_warning(
    old: str, new: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    warning = f"TDMI_{old.upper()} is deprecated: use TDMI_{new.upper()}"
    monkeypatch.setenv(f"TDMI_{new.upper()}", "7")
    with caplog.at_level(logging.WARNING, logger="tdmi.service"):
        assert getattr(Settings(), new) == 7
    assert warning not in caplog.text  # the new name alone: no warning
    monkeypatch.delenv(f"TDMI_{new.upper()}")
    monkeypatch.setenv(f"TDMI_{old.upper()}", "3")
    with caplog.at_level(logging.WARNING, logger="tdmi.service"):
        assert getattr(Settings(), new) == 3
    assert warning in caplog.text
    monkeypatch.setenv(f"TDMI_{new.upper()}", "7")
    assert getattr(Settings(), new) == 7  # both set: the new name wins


def test_an_old_name_in_an_env_file_is_read_too_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / "tdmi.env"
    env_file.write_text("TDMI_HEARTBEAT_S=9\n")
    with caplog.at_level(logging.WARNING, logger="tdmi.service"):
        assert Settings(_env_file=env_file).ws_ping_interval_s == 9
    assert "TDMI_HEARTBEAT_S is deprecated: use TDMI_WS_PING_INTERVAL_S" in caplog.text
    monkeypatch.setenv("TDMI_WS_PING_INTERVAL_S", "4")
    assert Settings(_env_file=env_file).ws_ping_interval_s == 4


def _builds_settings(path: Path) -> bool:
    """Whether the module at ``path`` builds ``Settings`` (calls ``Settings(...)``)."""
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings"
        for node in ast.walk(ast.parse(path.read_text()))
    )


def test_settings_are_built_at_the_edges_only(tmp_path: Path) -> None:
    builders = {
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "tdmi").rglob("*.py")) if _builds_settings(p)
    }
    assert builders == EDGES
    deep = tmp_path / "deep.py"
    deep.write_text("from tdmi.service.config import Settings\n\ndef f():\n    return Settings().port\n")
    assert _builds_settings(deep)  # the check sees a call below the top level
