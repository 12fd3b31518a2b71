"""README's "Faithful presets": every row's arguments name a real generator and real knobs
with allowed values (no torch, no model)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ipt_ray.cli.format import parse_assignments
from ipt_ray.core.config import TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def preset_rows() -> dict[str, str]:
    """method -> the first ``--generator ...`` code span of its row."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Faithful presets", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        spans = re.findall(r"`(--generator [^`]+)`", cells[1]) if len(cells) == 3 else []
        if spans:
            rows[cells[0]] = spans[0]
    return rows


ROWS = preset_rows()


def test_every_published_method_has_a_row():
    assert len(ROWS) == 10
    assert {shlex.split(args)[1] for args in ROWS.values()} == {
        "ipt-lookup",
        "ipt-encoder",
        "ipt-prefix",
        "idpg",
        "lpt",
        "prefix",
        "task",
    }


@pytest.mark.parametrize("method", list(ROWS))
def test_preset_arguments_validate(method):
    words = shlex.split(ROWS[method])
    generator = words[1]
    assignments = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    settings = parse_assignments(assignments)
    fields = set(TrainConfig.field_names())
    knobs = {k: v for k, v in settings.items() if k not in fields}
    config = TrainConfig.from_dict(
        {
            "generator": generator,
            **{k: v for k, v in settings.items() if k in fields},
            "generator_options": knobs,
        }
    )
    config.validate()  # raises ConfigError on an unknown knob or a value not allowed
