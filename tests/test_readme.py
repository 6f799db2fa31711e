"""The README stays true: every setting and every error code is documented, two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from models.errors import ALL_ERRORS
from plugin.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        ENV_PREFIX + name.upper() for name in Settings.model_fields if ENV_PREFIX + name.upper() not in README
    ]
    assert not missing


def test_every_error_code_is_in_the_readme() -> None:
    assert not [cls.code for cls in ALL_ERRORS if f"`{cls.code}`" not in README]


def test_exactly_two_set_up_commands() -> None:
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"```bash\n", setup)) == 2
