"""`pixelserve train | evaluate | export | recipes`."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from pixelserve.training.recipes import RECIPES, get_recipe


def main(command: str, argv: list[str]) -> int:
    parser = _parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return args.run(args)


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"pixelserve {command}")
    data_dir = os.environ.get("PIXELSERVE_DATA_DIR")
    if command == "train":
        parser.add_argument("recipe", help=f"one of: {', '.join(sorted(RECIPES))}")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override any recipe field (JSON values), e.g. --set learning_rate=0.01",
        )
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=Path(data_dir) if data_dir else None,
            help="folder with <dataset>.npz or image folders/archives (env PIXELSERVE_DATA_DIR); "
            "without it the Keras download is used",
        )
        parser.add_argument("--out", type=Path, default=Path("models"), help="model repository to export into")
        parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="checkpoints, history, logs")
        parser.add_argument("--version", type=int, help="version to export as (default: next free)")
        parser.add_argument("--no-export", action="store_true")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.set_defaults(run=_train)
    elif command == "evaluate":
        parser.add_argument("model_dir", type=Path, help="a model version directory: models/<name>/<version>")
        parser.add_argument("--data-dir", type=Path, default=Path(data_dir) if data_dir else None)
        parser.set_defaults(run=_evaluate)
    elif command == "export":
        parser.add_argument("run_dir", type=Path, help="a training run directory: runs/<recipe>/<timestamp>")
        parser.add_argument("--data-dir", type=Path, default=Path(data_dir) if data_dir else None)
        parser.add_argument("--out", type=Path, default=Path("models"))
        parser.add_argument("--version", type=int)
        parser.set_defaults(run=_export)
    else:
        parser.set_defaults(run=_recipes)
    return parser


def _train(args: argparse.Namespace) -> int:
    from pixelserve.training.train import train

    overrides = dict(item.split("=", 1) for item in args.set)
    for key in ("epochs", "batch_size", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    recipe = get_recipe(args.recipe).with_overrides(overrides)
    result = train(
        recipe,
        data_dir=args.data_dir,
        repository=args.out,
        runs_dir=args.runs_dir,
        export=not args.no_export,
        version=args.version,
        verbose=0 if args.quiet else 1,
    )
    print(f"run: {result.run_dir}")
    if result.model_dir:
        print(f"model: {result.model_dir}")
        print((result.model_dir / "model.json").read_text())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pixelserve.training.reproduce import reproduce_quality

    print(json.dumps(reproduce_quality(args.model_dir, args.data_dir), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    import keras

    from pixelserve.training.data import load_dataset
    from pixelserve.training.export import Normalization, export_model
    from pixelserve.training.models import normalization_of
    from pixelserve.training.recipes import Recipe
    from pixelserve.training.train import CHECKPOINT, HISTORY_FILE, RECIPE_FILE

    recipe = Recipe.from_dict(json.loads((args.run_dir / RECIPE_FILE).read_text()))
    core = keras.models.load_model(args.run_dir / CHECKPOINT)
    data = load_dataset(recipe.dataset, args.data_dir)
    history = json.loads((args.run_dir / HISTORY_FILE).read_text())
    info = json.loads((args.run_dir / "training.json").read_text())
    stats = normalization_of(core)
    normalization = Normalization(*stats) if stats else None
    target = export_model(
        core,
        recipe,
        data,
        args.out,
        normalization=normalization,
        history=history,
        training_info=info,
        version=args.version,
    )
    print(f"model: {target}")
    return 0


def _recipes(_args: argparse.Namespace) -> int:
    for name, recipe in sorted(RECIPES.items()):
        print(f"{name}: {recipe.description}")
        print(f"    {json.dumps(recipe.to_dict())}")
    return 0
