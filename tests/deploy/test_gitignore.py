""".gitignore keeps every env file out of commits except the documented example.

docs/rollout.md has operators create ``.env.qa`` and ``.env.prod`` beside the
scripts; those hold project ids, audiences and allow-lists and must never show
up as untracked files ready to be committed. ``git check-ignore --no-index``
asks git itself (the rules, not the index), so a tracked ``.env.example`` is
judged by the patterns too and a missing ``!.env.example`` would show.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.conftest import ROOT


def ignored(path: str) -> bool:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", path], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode in (0, 1), f"git check-ignore {path}: exit {result.returncode}: {result.stderr}"
    return result.returncode == 0


@pytest.fixture(autouse=True)
def _needs_git() -> None:
    assert shutil.which("git"), "git is needed to check .gitignore"
    assert (ROOT / ".git").exists(), f"{ROOT} is not a git work tree"


@pytest.mark.parametrize("name", [".env", ".env.prod", ".env.qa", ".env.staging", ".env.local"])
def test_env_files_are_ignored(name: str) -> None:
    assert ignored(name), f"{name} is not ignored by .gitignore"


def test_the_example_env_file_stays_tracked() -> None:
    assert not ignored(".env.example")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", ".env.example"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert tracked.returncode == 0, tracked.stderr
