"""The generated references in docs/reference/: what the code makes, committed as made."""

import argparse
import os

import pytest

from loopline import reference
from loopline.cli import build_parser, main
from tests.helpers import REPO_ROOT

FOLDER = REPO_ROOT / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(reference.REFERENCES))
def test_the_committed_reference_is_what_the_code_generates(name):
    committed = (FOLDER / name).read_text()
    made = reference.REFERENCES[name]()
    assert committed == made, f"docs/reference/{name} is out of date: run `python -m loopline.reference`"


def rows(text):
    """The table rows of a reference, by the code span that starts them."""
    return {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}


def test_each_variable_shows_its_type_bounds_and_default():
    found = rows(reference.configuration_reference())
    assert found["LOOPLINE_SINK_QUERY_PORT"] == (
        "| `LOOPLINE_SINK_QUERY_PORT` | integer, ≥ 0, ≤ 65535 | `9310` | Port of the query endpoint; 0 turns it off. |"
    )
    assert "| `exactly-once` or `at-least-once` | `exactly-once` |" in found["LOOPLINE_KAFKA_GUARANTEE"]
    assert "| string (optional), matching `^[A-Za-z_][A-Za-z0-9_]*$` |  |" in found["LOOPLINE_CLICKHOUSE_DATABASE"]
    assert '| JSON object | `{"delta": 0.002}` |' in found["LOOPLINE_DRIFT_CONCEPT_PARAMS"]
    assert "| secret string (optional) |  |" in found["LOOPLINE_KAFKA_SASL_PASSWORD"]
    assert '| string | `""` (empty) |' in found["LOOPLINE_TRAINER_CANARY_STEPS"]
    assert "`loopline kafka start`" in found["LOOPLINE_KAFKA_BOOTSTRAP_SERVERS"]  # reST literals become markdown


def parsers(parser):
    """``parser`` and every parser of its subcommands, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_the_cli_reference_has_every_command_with_each_argument_and_its_help():
    text = reference.cli_reference()
    sections = {}
    for section in text.split("\n#")[1:]:
        heading, _, body = section.partition("\n")
        sections[heading.strip("# `")] = body
    commands = list(parsers(build_parser()))
    assert len(commands) > 10 and sorted(sections) == sorted(parser.prog for parser in commands)
    for parser in commands:
        arguments = rows(sections[parser.prog])
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            names = action.option_strings or [action.metavar or action.dest]
            row = next(line for key, line in arguments.items() if key.split(" ")[0].split(",")[0] == names[0])
            assert " ".join((action.help or "").split()) in row, (parser.prog, names)


def test_the_references_show_the_codes_defaults_whatever_the_environment(monkeypatch):
    before = [make() for make in reference.REFERENCES.values()]
    monkeypatch.setenv("LOOPLINE_INFERENCE_MODEL_NAME", "elsewhere")  # the default of every models command's --model
    monkeypatch.setenv("LOOPLINE_KAFKA_PARTITIONS", "9")
    monkeypatch.setenv("COLUMNS", "40")  # argparse wraps its usage lines at the terminal's width
    assert [make() for make in reference.REFERENCES.values()] == before
    assert "elsewhere" not in before[1] and os.environ["LOOPLINE_INFERENCE_MODEL_NAME"] == "elsewhere"


def test_the_generator_writes_both_and_its_check_names_a_stale_one(tmp_path, capsys):
    assert reference.main([str(tmp_path), "--check"]) == 1  # none written yet
    assert not list(tmp_path.iterdir())
    assert reference.main([str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cli.md", "configuration.md"]
    assert reference.main([str(tmp_path), "--check"]) == 0
    (tmp_path / "cli.md").write_text("stale")
    capsys.readouterr()
    assert reference.main([str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().err == f"out of date: {tmp_path / 'cli.md'}; run `python -m loopline.reference`\n"


def test_loopline_config_prints_the_configuration_reference(capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out == reference.configuration_reference()
