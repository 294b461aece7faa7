"""The README documents what the code does: every error code with its status, every limit and setting, every
template parameter. Each list comes from the code (errors.CODES, settings, template.yaml), so a new code, limit
or parameter cannot be added without documenting it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from local.template import Template
from mlservice import settings
from mlservice.errors import CODES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _error_table() -> dict[int, set[str]]:
    rows = re.findall(r"^\| (\d{3}) \| (.+) \|$", README, flags=re.M)
    return {int(status): set(re.findall(r"`([a-z0-9_]+)`", codes)) for status, codes in rows}


def test_the_error_table_lists_every_code_with_its_status():
    table = _error_table()
    documented = {code: status for status, codes in table.items() for code in codes if code in CODES}
    assert documented == {code: c.status for code, c in CODES.items()}
    mentioned = {code for codes in table.values() for code in codes}
    undocumented_words = mentioned - set(CODES) - {"stage", "version"}  # "both `stage` and `version`"
    assert not undocumented_words, f"the table names codes that do not exist: {undocumented_words}"


def test_every_setting_is_documented():
    source = Path(settings.__file__).read_text(encoding="utf-8")
    variables = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source))
    assert len(variables) >= len(dataclasses.fields(settings.Settings))
    missing = sorted(v for v in variables if f"`{v}`" not in README)
    assert not missing, f"settings not in the README: {missing}"


def test_every_template_parameter_is_documented():
    missing = sorted(name for name in Template().parameters if f"`{name}`" not in README)
    assert not missing, f"template parameters not in the README: {missing}"
