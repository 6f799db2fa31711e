"""What every ``photomarker`` sub-command reads from its click context: the one Settings object."""

from __future__ import annotations

import click

from models.errors import SettingsError
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
