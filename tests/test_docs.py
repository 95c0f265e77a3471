"""The documentation (issue 28): the README is a short front door whose links all resolve, and the docs site builds
with `mkdocs build --strict` (a broken link or a page left out of the navigation fails it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_door_whose_links_resolve() -> None:
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert links, "the README links to the docs"
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).is_file()]
    assert not missing, missing
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= {Path(link).name for link in links}, "every docs page is one click from the README"
    for step in ("make demo", "make test", "edgecl learn", "edgecl classify", "edgecl serve", "edgecl status",
                 "edgecl forget", "unknown"):  # fmt: skip
        assert step in README, step


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "usage" / "index.html").is_file()
    json_contracts = (tmp_path / "site" / "usage" / "index.html").read_text()
    assert "JSON contracts" in json_contracts
