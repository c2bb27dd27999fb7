"""Training configs: the shipped ones validate, the paper's follow the paper, and a wrong key, type
or override is named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tdmi.model.presets import get_preset
from tdmi.model.training.config import ConfigError, load_config, validate_config
from tdmi.service.cli import main

CONFIGS = Path(__file__).parents[4] / "configs"


def _raw(tmp_path: Path, **train: Any) -> dict[str, Any]:
    """The smallest valid config: every other key has a default."""
    return {
        "model": {"name": "tdmi-tiny"},
        "data": {"root": str(tmp_path)},
        "train": {"out_dir": str(tmp_path / "run"), **train},
    }


def _written(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert get_preset(cfg.model.name).name == cfg.model.name


def test_paper_configs_follow_the_paper() -> None:
    for name in ("tdmi_posetrack17", "tdmi_posetrack18", "tdmi_posetrack21"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.model.name == "tdmi-w48-384x288"
        assert (cfg.train.lr, cfg.train.epochs, cfg.train.milestones, cfg.train.gamma) == (
            1e-3,
            20,
            (6, 12, 18),
            0.1,
        )


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["train"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"cfg\.yaml: train\.lrr: unknown key \(known: .*\blr\b"):
        load_config(_written(tmp_path, raw))


def test_unknown_nested_key_and_wrong_type(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["data"]["augment"] = {"max_rotation": 30}
    with pytest.raises(ConfigError, match=r"data\.augment\.max_rotation: unknown key .*max_rotation_deg"):
        validate_config(raw)
    with pytest.raises(ConfigError, match=r"train\.precision: "):
        validate_config(_raw(tmp_path, precision="fp8"))
    with pytest.raises(ConfigError, match=r"milestones must increase"):
        validate_config(_raw(tmp_path, milestones=[12, 6]))


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    path = _written(tmp_path, _raw(tmp_path))
    cfg = load_config(path, ["train.lr=5e-4", "train.milestones=[2, 4]", "loss.mutual_info.margin=0.5"])
    assert (cfg.train.lr, cfg.train.milestones, cfg.loss.mutual_info.margin) == (5e-4, (2, 4), 0.5)
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        load_config(path, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.nope: unknown key"):
        load_config(path, ["train.nope=1"])


def test_train_command_reports_a_bad_config_in_one_line(tmp_path: Path, capsys) -> None:
    path = _written(tmp_path, {"model": {"name": "tdmi-tiny"}})
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tdmi: error: ") and "data: Field required" in err and "\n" not in err
