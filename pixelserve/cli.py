"""`pixelserve` console script: dispatches to the training or the serving side.

Imports are late so `pixelserve serve` never loads TensorFlow and a serving install needs no training extra.
"""

from __future__ import annotations

import sys

USAGE = """usage: pixelserve <command> [options]
       pixelserve --version

commands:
  train      train a recipe and export it into the model repository    (needs the [train] extra)
  evaluate   measure an exported model on the real test split          (needs the [train] extra)
  export     export a finished training run again                      (needs the [train] extra)
  quantize   make an int8 variant <name>-int8 if it passes its gates   (needs the [train] extra)
  recipes    list the named recipes and their settings                 (needs the [train] extra)
  serve      serve a model repository over REST and gRPC               (needs the [serve] extra)
  score      batch-score images with a model                           (needs the [serve] extra)
  verify     check served models against their golden sets             (needs the [serve] extra)
  dataset    turn payload logs into an image-folder dataset for train  (needs the [serve] extra)
  probe      health-check the server in this container                 (needs the [serve] extra)

Run `pixelserve <command> --help` for a command's options.
"""

TRAINING = {"train", "evaluate", "export", "quantize", "recipes"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("-V", "--version"):
        from pixelserve import __version__

        print(f"pixelserve {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command in TRAINING:
        try:
            from pixelserve.training import cli as training_cli
        except ImportError as exc:
            return _missing("train", exc)
        return training_cli.main(command, rest)
    if command == "serve":
        try:
            from pixelserve.service.process import cli as service_cli
        except ImportError as exc:
            return _missing("serve", exc)
        return service_cli.main(rest)
    if command == "score":
        try:
            from pixelserve.service.scoring import main as score
        except ImportError as exc:
            return _missing("serve", exc)
        return score.main(rest)
    if command == "verify":
        try:
            from pixelserve.service.tools import verify
        except ImportError as exc:
            return _missing("serve", exc)
        return verify.main(rest)
    if command == "probe":
        try:
            from pixelserve.service.tools import probe
        except ImportError as exc:
            return _missing("serve", exc)
        return probe.main(rest)
    if command == "dataset":
        try:
            from pixelserve.service.tools import dataset
        except ImportError as exc:
            return _missing("serve", exc)
        return dataset.main(rest)
    print(f"pixelserve: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _missing(extra: str, exc: ImportError) -> int:
    print(f"pixelserve: {exc}. Install the [{extra}] extra: pip install 'pixelserve[{extra}]'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
