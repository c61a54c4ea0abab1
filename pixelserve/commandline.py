"""The one CLI idiom of every `pixelserve` command: a pydantic-settings class per command.

Each field is a kebab-case flag and a ``PIXELSERVE_<FIELD>`` environment variable; a flag wins over the
environment, the environment over the default, and ``--help`` lists them all. Commands parse with `parse`,
which turns help, bad flags and invalid values into an exit status instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict, SettingsError

EXIT_USAGE = 2

S = TypeVar("S", bound="CommandSettings")


class CommandSettings(BaseSettings):
    """Base of every command's settings: one prefix, one flag spelling, unknown variables ignored."""

    model_config = SettingsConfigDict(
        env_prefix="PIXELSERVE_",
        extra="ignore",
        protected_namespaces=(),
        cli_kebab_case=True,
        cli_prog_name="pixelserve",
    )

    @classmethod
    def from_cli(cls: type[S], argv: Sequence[str] | None = None) -> S:
        """Flags over the environment over defaults; raises SystemExit for --help and bad flags."""
        return CliApp.run(cls, cli_args=list(argv) if argv is not None else None)


def parse(cls: type[S], argv: Sequence[str] | None, command: str) -> S | int:
    """The settings, or the exit status to return: 0 after --help, 2 for bad flags or values."""
    try:
        return cls.from_cli(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse underneath: --help (0) or an unknown flag (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except (ValidationError, SettingsError) as exc:
        print(f"pixelserve {command}: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
