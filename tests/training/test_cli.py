"""`pixelserve train|evaluate|export` take their flags from pydantic-settings: every flag has a PIXELSERVE_*
variable, flags win over the environment, and bad usage exits 2 without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelserve.cli import main
from pixelserve.training.cli import EvaluateSettings, ExportSettings, TrainSettings, _overrides


def test_train_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELSERVE_DATA_DIR", "/data/from-env")
    monkeypatch.setenv("PIXELSERVE_EPOCHS", "7")
    settings = TrainSettings.from_cli(
        ["mnist-classifier", "--epochs", "3", "--set", "seed=1", "--set", "x=[1,2]", '--set=m={"a": 1, "b": 2}']
    )
    assert settings.recipe == "mnist-classifier" and settings.epochs == 3
    assert settings.data_dir == Path("/data/from-env")
    assert _overrides(settings) == {"seed": "1", "x": "[1,2]", "m": '{"a": 1, "b": 2}', "epochs": "3"}
    assert settings.export and not settings.quiet


def test_train_keeps_its_bare_flags() -> None:
    settings = TrainSettings.from_cli(["mnist-classifier", "--no-export", "--quiet", "--out", "repo"])
    assert (settings.export, settings.quiet, settings.out) == (False, True, Path("repo"))


def test_evaluate_and_export_read_the_data_dir_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELSERVE_DATA_DIR", "/d")
    assert EvaluateSettings.from_cli(["models/m/1"]).data_dir == Path("/d")
    assert ExportSettings.from_cli(["runs/m/1", "--version", "4"]).version == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],  # the recipe is required
        ["train", "mnist-classifier", "--epochs", "0"],
        ["train", "mnist-classifier", "--no-such-flag"],
        ["evaluate"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    assert "--data-dir" in capsys.readouterr().out


def test_export_changes_only_export_time_fields() -> None:
    settings = ExportSettings.from_cli(["runs/m/1", "--set", "tta_dihedral=true", "--set=eval_sigmas=[0.1,0.3]"])
    assert settings.overrides == ["tta_dihedral=true", "eval_sigmas=[0.1,0.3]"]
    with pytest.raises(SystemExit, match="eval_sigmas cannot change after training"):
        main(["export", "runs/m/1", "--set", "eval_sigmas=[0.1]"])
