"""What the ``photomarker`` sub-commands share: the one Settings object from the click context, how a
failure is reported, and the command line recorded in a model card."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from models.errors import PhotomarkerError, SettingsError
from plugin.settings import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The Settings the main group loaded; loaded here when a command runs on its own (tests)."""
    obj = ctx.find_root().obj
    settings = obj.get("settings") if isinstance(obj, dict) else None
    if isinstance(settings, Settings):
        return settings
    try:
        return load_settings()
    except SettingsError as error:
        click.echo(f"photomarker: {error.message}", err=True)
        ctx.exit(2)
        raise AssertionError("unreachable") from None


def fail(ctx: click.Context, error: PhotomarkerError) -> None:
    """A command's expected failure: its code and message on stderr, exit status 1."""
    click.echo(f"photomarker: {error.code}: {error.message}", err=True)
    ctx.exit(1)


def command_line(command: str, task: str, csv_path: Path, **options: object) -> str:
    """The command as someone would type it to reproduce this run (None marks a flag)."""
    parts = ["photomarker", command, task, "--data", str(csv_path)]
    for key, value in options.items():
        parts.append(f"--{key.replace('_', '-')}")
        if value is not None:
            parts.append(",".join(value) if isinstance(value, tuple) else str(value))
    return shlex.join(parts)


def describe_data(csv_path: Path) -> str:
    """A dataset as a card names it: its folder and file, not where it sat on this machine."""
    return f"{csv_path.parent.name}/{csv_path.name}"
