"""`pixelserve train | evaluate | export | quantize | recipes`: one settings class per command
(see pixelserve.commandline).

Every flag is also a ``PIXELSERVE_*`` variable (``--data-dir`` is ``PIXELSERVE_DATA_DIR``); TensorFlow is
imported only once a command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import Field
from pydantic_settings import CliApp, CliImplicitFlag, CliPositionalArg, SettingsConfigDict

from pixelserve.commandline import CommandSettings, parse

from .recipes import RECIPES, get_recipe

DATA_DIR_HELP = "folder with <dataset>.npz or image folders/archives; without it the Keras download is used"


SET_FLAG = "--set"
# Recipe fields that only shape the exported graph and its checks, so `pixelserve export` may change them.
EXPORT_FIELDS = ("tta_flip", "tta_translate", "tta_dihedral", "opset", "parity_samples", "parity_tolerance")
S = TypeVar("S", bound=CommandSettings)


def _with_set_flags(cls: type[S], argv: Sequence[str] | None) -> S:
    """pydantic-settings would split a list value at its commas, so ``--set eval_sigmas=[0.1,0.3]`` would become
    two overrides: --set values are taken out first and handed over whole."""
    rest: list[str] = []
    overrides: list[str] = []
    args = iter(sys.argv[1:] if argv is None else argv)
    for arg in args:
        if arg == SET_FLAG:
            overrides.append(next(args, ""))
        elif arg.startswith(SET_FLAG + "="):
            overrides.append(arg[len(SET_FLAG) + 1 :])
        else:
            rest.append(arg)
    extra = {"set": overrides} if overrides else {}
    return CliApp.run(cls, cli_args=rest, **extra)


class TrainSettings(CommandSettings):
    """Train a recipe, evaluate it on the real test split and export it into the model repository."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve train")

    recipe: CliPositionalArg[str] = Field(description=f"one of: {', '.join(sorted(RECIPES))}")
    epochs: int | None = Field(None, ge=1, description="override the recipe's epochs")
    batch_size: int | None = Field(None, ge=1, description="override the recipe's batch size")
    seed: int | None = Field(None, description="override the recipe's seed")
    overrides: list[str] = Field(
        default_factory=list,
        alias="set",
        description="override any recipe field, KEY=VALUE with a JSON value, repeatable: --set learning_rate=0.01",
    )
    data_dir: Path | None = Field(None, description=DATA_DIR_HELP)
    out: Path = Field(Path("models"), description="model repository to export into")
    runs_dir: Path = Field(Path("runs"), description="checkpoints, history and logs of each run")
    version: int | None = Field(None, ge=1, description="version to export as (default: the next free one)")
    export: CliImplicitFlag[bool] = Field(True, description="export the trained model (--no-export skips it)")
    quiet: CliImplicitFlag[bool] = Field(False, description="no progress bars")

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None) -> TrainSettings:
        return _with_set_flags(cls, argv)


class EvaluateSettings(CommandSettings):
    """Re-measure an exported model on the real test split and compare with its model.json."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve evaluate")

    model_dir: CliPositionalArg[Path] = Field(description="a model version directory: models/<name>/<version>")
    data_dir: Path | None = Field(None, description=DATA_DIR_HELP)
    variants: CliImplicitFlag[bool] = Field(
        False, description="classifiers: also score real-world variants (scans, printed digits, photos)"
    )
    record: CliImplicitFlag[bool] = Field(
        False, description="write the variant accuracies into the version's model.json (quality.variants)"
    )
    golden: CliImplicitFlag[bool] = Field(
        False, description="(re)write the version's golden set from its graph and record it in model.json"
    )
    trust: CliImplicitFlag[bool] = Field(
        False,
        description="measure the version's trust evidence again, in place (calibration, anomaly map and threshold, "
        "OOD report, variants, drift baseline, golden set), as export does",
    )


class ExportSettings(CommandSettings):
    """Export a finished training run again (the checkpoint in its run directory), without training."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve export")

    run_dirs: CliPositionalArg[list[Path]] = Field(
        description="a training run directory (runs/<recipe>/<timestamp>); several: their ensemble, the mean of "
        "their probabilities in one graph (members of one recipe, different seeds)"
    )
    data_dir: Path | None = Field(None, description=DATA_DIR_HELP)
    out: Path = Field(Path("models"), description="model repository to export into")
    version: int | None = Field(None, ge=1, description="version to export as (default: the next free one)")
    name: str | None = Field(None, description="several runs: the ensemble's model name (default: their recipe's)")
    overrides: list[str] = Field(
        default_factory=list,
        alias="set",
        description=f"change an export-time recipe field, KEY=VALUE, repeatable: {', '.join(EXPORT_FIELDS)}",
    )

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None) -> ExportSettings:
        return _with_set_flags(cls, argv)


class QuantizeSettings(CommandSettings):
    """Make an int8 variant of an exported model, served beside it as <name>-int8; written only if it passes the
    accuracy and speed gates (training/quantize.py)."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve quantize")

    model_dir: CliPositionalArg[Path] = Field(description="models/<name>/<version>, or models/<name> for its latest")
    data_dir: Path | None = Field(None, description=DATA_DIR_HELP)
    out: Path | None = Field(None, description="model repository for <name>-int8 (default: the float's own)")
    version: int | None = Field(None, ge=1, description="version to write as (default: the next free one)")
    calibration_samples: int = Field(512, ge=1, description="training images the activation ranges are fitted on")


class RecipesSettings(CommandSettings):
    """List the named recipes and every setting they carry."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve recipes")


def main(command: str, argv: list[str]) -> int:
    runners = {"train": (TrainSettings, _train), "evaluate": (EvaluateSettings, _evaluate),
               "export": (ExportSettings, _export), "recipes": (RecipesSettings, _recipes),
               "quantize": (QuantizeSettings, _quantize)}  # fmt: skip
    settings_class, run = runners[command]
    settings = parse(settings_class, argv, command)
    if isinstance(settings, int):
        return settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run(settings)


def _pairs(items: list[str], command: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"pixelserve {command}: --set takes KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _overrides(settings: TrainSettings) -> dict[str, str]:
    overrides = _pairs(settings.overrides, "train")
    for key in ("epochs", "batch_size", "seed"):
        if getattr(settings, key) is not None:
            overrides[key] = str(getattr(settings, key))
    return overrides


def _train(settings: TrainSettings) -> int:
    from .ensemble import train_ensemble
    from .train import train

    recipe = get_recipe(settings.recipe).with_overrides(_overrides(settings))
    result = (train_ensemble if recipe.members > 1 else train)(
        recipe,
        data_dir=settings.data_dir,
        repository=settings.out,
        runs_dir=settings.runs_dir,
        export=settings.export,
        version=settings.version,
        verbose=0 if settings.quiet else 1,
    )
    print(f"run: {result.run_dir}")
    if result.model_dir:
        print(f"model: {result.model_dir}")
        print((result.model_dir / "model.json").read_text())
    return 0


def _evaluate(settings: EvaluateSettings) -> int:
    from .reproduce import record_variants, reproduce_quality, reproduce_variants

    if settings.trust:
        from .trust import refresh

        refresh(settings.model_dir, settings.data_dir)
    elif settings.golden:
        from .reproduce import record_golden

        record_golden(settings.model_dir, settings.data_dir)
    report = reproduce_quality(settings.model_dir, settings.data_dir)
    if settings.variants or settings.record:
        report["variants"] = reproduce_variants(settings.model_dir, settings.data_dir)
        if settings.record:
            record_variants(settings.model_dir, report["variants"]["declared"])
    print(json.dumps(report, indent=2))
    return 0


def _export(settings: ExportSettings) -> int:
    from .ensemble import export_ensemble
    from .train import CHECKPOINT, export_run

    runs, data_dir, out, version = settings.run_dirs, settings.data_dir, settings.out, settings.version
    changes = _pairs(settings.overrides, "export")
    if unknown := sorted(set(changes) - set(EXPORT_FIELDS)):
        raise SystemExit(f"pixelserve export: {', '.join(unknown)} cannot change after training; --set takes "
                         f"{', '.join(EXPORT_FIELDS)}")  # fmt: skip
    for run in runs:
        if not (run / CHECKPOINT).is_file():
            raise SystemExit(f"pixelserve export: {run} is not a finished training run (no {CHECKPOINT} in it)")
    if len(runs) == 1:
        if settings.name:
            raise SystemExit("pixelserve export: --name is for an ensemble of several runs")
        model = export_run(runs[0], data_dir, out, version, changes)
    else:
        model = export_ensemble(runs, data_dir, out, version, settings.name, changes)
    print(f"model: {model}")
    return 0


def _quantize(settings: QuantizeSettings) -> int:
    from .quantize import command

    return command(settings.model_dir, settings.data_dir, settings.out, settings.version, settings.calibration_samples)


def _recipes(_settings: RecipesSettings) -> int:
    for name, recipe in sorted(RECIPES.items()):
        ensemble = f" Ensemble: the mean of {recipe.members} such networks." if recipe.members > 1 else ""
        print(f"{name}: {recipe.description}{ensemble}")
        print(f"    {json.dumps(recipe.to_dict())}")
    return 0
