"""The flags of ``tdmi serve`` and ``tdmi worker``: made from the ``Settings`` fields, one each."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal, get_args

import pytest

from tdmi.service.cli import build_parser
from tdmi.service.config import SECTIONS, Settings
from tdmi.service.settings_flags import settings_from_flags

SECRETS = {"api_keys", "admin_api_keys"}


def _command(name: str) -> argparse.ArgumentParser:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def _flag(command: str, option: str) -> argparse.Action:
    return _command(command)._option_string_actions[option]


def _settings(*argv: str) -> Settings:
    return settings_from_flags(build_parser().parse_args(["serve", *argv]))


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_every_setting_but_the_api_keys_is_a_flag_with_its_description_as_help(command: str) -> None:
    options = _command(command)._option_string_actions
    for name, field in Settings.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        if name in SECRETS:  # a command line is visible to every user of the host
            assert flag not in options
            continue
        assert options[flag].dest == name
        assert field.description and (options[flag].help or "").startswith(field.description)


def test_every_setting_has_a_description_and_a_section() -> None:
    names = list(Settings.model_fields)
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []
    assert names[0] in SECTIONS and set(SECTIONS) <= set(names)
    groups = [g.title for g in _command("serve")._action_groups]
    assert all(title in groups for title in SECTIONS.values())


def test_choices_come_from_the_literal_and_defaults_are_shown() -> None:
    backend = _flag("serve", "--backend")
    assert backend.choices == get_args(Literal["auto", "torch", "torchscript", "onnxruntime"])
    assert _flag("worker", "--log-format").choices == ("text", "json")
    assert (_flag("serve", "--max-batch").help or "").endswith("(default 16)")
    assert (_flag("serve", "--max-delay-ms").help or "").endswith("(default 5)")


def test_flags_set_settings_of_each_type_and_the_old_names_still_work() -> None:
    settings = _settings(
        "--model",
        "a=/w/a.pt",
        "--models",
        "b",
        "--redis",
        "redis://h:6379/1",
        "--max-batch",
        "4",
        "--latency-budget-ms",
        "50",
        "--data-dir",
        "/tmp/x",
        "--insecure",
        "--no-keep-uploads",
        "--backend",
        "torch",
    )
    assert settings.models == ["a=/w/a.pt", "b"]
    assert settings.redis_url == "redis://h:6379/1"
    assert (settings.max_batch, settings.latency_budget_ms, settings.data_dir) == (4, 50.0, Path("/tmp/x"))
    assert (settings.insecure, settings.keep_uploads, settings.backend) == (True, False, "torch")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch", "0"], "argument --max-batch: Input should be greater than or equal to 1"),
        (["--max-batch", "1.5"], "argument --max-batch: Input should be a valid integer"),
        (["--reuse-drift-iou", "2"], "argument --reuse-drift-iou: Input should be less than or equal to 1"),
        (["--backend", "tensorflow"], "argument --backend: invalid choice"),
    ],
)
def test_a_bad_value_is_refused_as_the_command_line_is_read(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["worker", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file = tmp_path / "tdmi.yaml"
    settings_file.write_text("max_batch: 8\nmax_fps: 10\nstaleness_ms: 250\nmodels: [tdmi-tiny=/w/a.pt]\n")
    monkeypatch.setenv("TDMI_SETTINGS_FILE", str(settings_file))
    monkeypatch.setenv("TDMI_MAX_BATCH", "32")
    monkeypatch.setenv("TDMI_MAX_FPS", "20")
    settings = _settings("--max-batch", "4")
    assert settings.max_batch == 4  # flag over environment and file
    assert settings.max_fps == 20  # environment over file
    assert (settings.staleness_ms, settings.models) == (250, ["tdmi-tiny=/w/a.pt"])  # file over default
    assert settings.max_streams == Settings.model_fields["max_streams"].default
    assert _settings().max_batch == 32  # no flag: the environment
