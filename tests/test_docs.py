"""The docs stay true to the repository: the worked example in docs/extending.md is the
tested one, every link to a file resolves, and nothing points outside the repository."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
EXAMPLE = REPO / "docs" / "examples" / "mean_distance"


def test_extending_shows_the_example_that_the_comparison_test_runs():
    text = (REPO / "docs" / "extending.md").read_text()
    python = re.search(r"`mean_distance.py`:\n\n```python\n(.*?)```", text, re.S)
    config = re.search(r"`conf/method/mean_distance.yaml`:\n\n```yaml\n(.*?)```", text, re.S)
    assert python and python.group(1) == (EXAMPLE / "mean_distance.py").read_text()
    assert (
        config
        and config.group(1) == (EXAMPLE / "conf" / "method" / "mean_distance.yaml").read_text()
    )


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_nothing_points_outside_the_repository():
    outside = re.compile(r"KNG\.md|paper_foads_kng|STYLE\.md|\.\./shared/docs")
    files = [REPO / "README.md", *DOCS, *(REPO / "src").rglob("*.py")]
    files += [*(REPO / "baselines").rglob("*.py"), *(REPO / "conf").rglob("*.yaml")]
    files += [*(REPO / "tests").rglob("*.py")]
    found = [
        f"{p.relative_to(REPO)}:{i + 1}"
        for p in files
        if p != Path(__file__)
        for i, line in enumerate(p.read_text().splitlines())
        if outside.search(line)
    ]
    assert not found


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 200
    commands = [ln for ln in lines[:40] if ln.startswith("make ")]
    assert [c.split()[1] for c in commands] == ["demo", "test"]
