"""The documentation (README.md and docs/**/*.md) stays true: every code block runs in a test or says
why not, every relative link reaches a file and heading, and the examples marked as run here run
against the session broker.

The line directly above each fenced block is its marker (docs/writing-docs.md):

- ``<!-- run: tests/<file>.py -->``: that test file runs the block (and names the page's file);
- ``<!-- not run: <why> -->``: why no test runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loopline import ArtifactStore, Status, bootstrap_version, load_registry, publish
from loopline.kafka.topics import create_topics
from loopline.models import TrainConfig
from loopline.models.datasets import Concept, feature_names, sample
from tests.helpers import REPO_ROOT
from tests.workers import decoded, wait_records, worker

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
THIS = "tests/test_docs.py"
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!-- (?:run: (?P<runner>tests/[\w/]+\.py)|not run: (?P<why>\S.*?)) -->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+).+?\1")
HEADING = re.compile(r"#{1,6}\s+(.*?)\s*#*\s*$")
RUN_HERE = {("README.md", "python"), ("docs/guides/own-model.md", "python")}
"""The (page, language) of each block the tests below run: one block each."""


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it starts (1-based line of its opening fence), its language, its
    marker's runner or reason, and its code."""

    line: int
    language: str
    runner: str | None
    why: str | None
    code: str


def blocks(text: str) -> list[Block]:
    """Every fenced code block of a page's ``text``, in order."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening.group(1), i
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):  # closed by a fence of its kind
            i += 1
        marker = MARKER.match(lines[start - 1]) if start else None
        runner, why = (marker.group("runner"), marker.group("why")) if marker else (None, None)
        found.append(Block(start + 1, opening.group(2), runner, why, "".join(f"{x}\n" for x in lines[start + 1 : i])))
        i += 1
    return found


def unmarked(text: str) -> list[str]:
    """``line (language)`` of each block of ``text`` that has no marker."""
    return [f"{b.line} ({b.language or 'no language'})" for b in blocks(text) if not (b.runner or b.why)]


def outside_blocks(text: str) -> str:
    """``text`` with the lines of its fenced blocks blank."""
    lines = text.splitlines()
    for block in blocks(text):
        end = block.line + block.code.count("\n")  # the closing fence's 0-based index
        lines[block.line - 1 : end + 1] = [""] * len(lines[block.line - 1 : end + 1])
    return "\n".join(lines)


def prose(text: str) -> str:
    """``text`` without its fenced blocks and code spans, where a link is not a link."""
    return CODE_SPAN.sub("", outside_blocks(text))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of ``text``: lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2``... after a repeated one."""
    seen: dict[str, int] = {}
    found = set()
    for line in outside_blocks(text).splitlines():
        heading = HEADING.match(line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that reach no file, or no heading of the Markdown file they name."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked.read_text())):
            broken.append(f"{target} (no such heading)")
    return broken


def run_here(page: str, language: str) -> str:
    """The one ``language`` block of ``page`` (from the checkout's root) that is marked as run by this file."""
    [code] = [b.code for b in blocks((REPO_ROOT / page).read_text()) if b.runner == THIS and b.language == language]
    return code


def name(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


def test_the_pages_are_found():
    assert {"README.md", "docs/getting-started.md", "docs/architecture.md"} <= {name(p) for p in PAGES}


def test_every_code_block_runs_in_a_test_or_says_why_not():
    missing = [f"{name(page)}:{where}" for page in PAGES for where in unmarked(page.read_text())]
    assert not missing, f"blocks without <!-- run: tests/... --> or <!-- not run: why --> above: {missing}"


def test_a_run_marker_names_a_test_file_that_names_the_page():
    wrong = []
    for page in PAGES:
        for block in blocks(page.read_text()):
            runner = REPO_ROOT / (block.runner or "")
            if block.runner and not (runner.is_file() and page.name in runner.read_text()):
                wrong.append(f"{name(page)}:{block.line} {block.runner}")
    assert not wrong, f"run markers naming no test file, or one that does not name the page: {wrong}"


def test_the_blocks_marked_as_run_here_are_the_ones_run_here():
    marked = {(name(page), b.language) for page in PAGES for b in blocks(page.read_text()) if b.runner == THIS}
    assert marked == RUN_HERE


def test_every_relative_link_reaches_a_file_and_heading():
    broken = [f"{name(page)}: {link}" for page in PAGES for link in broken_links(page)]
    assert not broken, f"broken links: {broken}"


def test_blocks_are_found_with_their_markers():
    text = ("text\n\n```python\nprint(1)\n```\n\n<!-- not run: a picture -->\n```\n[x](y)\n```\n\n"
            "<!-- run: tests/test_docs.py -->\n```bash\necho\n```\n"
            "<!-- not run:  -->\n~~~\n```\n~~~\n")  # fmt: skip
    found = blocks(text)
    assert [(b.line, b.language, b.runner, b.why) for b in found] == [
        (3, "python", None, None), (8, "", None, "a picture"), (13, "bash", THIS, None), (17, "", None, None)
    ]  # fmt: skip
    assert [found[0].code, found[3].code] == ["print(1)\n", "```\n"]
    assert unmarked(text) == ["3 (python)", "17 (no language)"]
    assert "[x](y)" not in prose(text)


def test_broken_links_and_headings_are_found(tmp_path):
    (tmp_path / "other.md").write_text(
        "# Title\n\n## Can't stop, `won't` stop\n\n## Twice\n\n## Twice\n\n```\n# no\n```\n"
    )
    page = tmp_path / "page.md"
    page.write_text("[a](other.md) [b](other.md#cant-stop-wont-stop) [c](other.md#twice-1) [d](https://x.org/y)\n"
                    "[e](missing.md) [f](other.md#nowhere) `[g](inline.md)` [h](#here) [i](other.md#no)\n\n"
                    "## Here\n")  # fmt: skip
    assert broken_links(page) == ["missing.md (no such file)", "other.md#nowhere (no such heading)",
                                  "other.md#no (no such heading)"]  # fmt: skip


def run_example(code: str, cwd: Path, **env: str) -> str:
    """Run a page's Python block as its own program; its standard output."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=os.environ | env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_sends_a_feature_and_reads_its_prediction(kafka, tmp_path):
    create_topics(kafka)
    x, y = sample(Concept(seed=0, n_features=8), rows=2000, seed=0)  # `loopline models bootstrap`'s model, smaller
    version = bootstrap_version(x, y, model_name="default", feature_names=feature_names(8), classes=["class0", "class1"],
                                store=ArtifactStore(tmp_path / "artifacts", 1 << 20),
                                config=TrainConfig(hidden=(8,), epochs=2))  # fmt: skip
    publish(kafka, [version.with_status(Status.SERVING, "bootstrapped")])
    env = {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    with worker("inference", kafka, tmp_path, **env):
        out = run_example(run_here("README.md", "python"), tmp_path, **env)
    [prediction] = decoded(kafka, "predictions", "prediction")
    assert out == f"default v1: {prediction['predicted_class']}\n"


def test_the_own_model_guide_registers_the_penguin_pipeline_and_a_worker_serves_its_bird(kafka, tmp_path):
    create_topics(kafka)
    env = {"LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
           "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(tmp_path / "artifacts")}  # fmt: skip
    run_example(run_here("docs/guides/own-model.md", "python"), tmp_path, **env)
    served = load_registry(kafka).serving("penguins")
    assert served is not None and served.version == 1
    assert served.feature_types == ["float?", "float?", "float?", "category", "category?"]
    assert served.lineage["hyperparameters"]["family"] == "sklearn"
    with worker("inference", kafka, tmp_path, LOOPLINE_INFERENCE_MODEL_NAME="penguins", **env):
        [prediction] = wait_records(kafka, "predictions", "prediction", 1)
    assert (prediction["event_id"], prediction["model_name"], prediction["model_version"]) == ("bird-1", "penguins", 1)
    assert prediction["predicted_class"] in served.classes
