"""The ``crontick`` command: ``flask --app main`` under its own name (``crontick jobs list``, ``crontick tick``).

``make venv`` writes ``.venv/bin/crontick`` with :func:`write_launcher` (the Dockerfile
writes ``/usr/local/bin/crontick`` the same way): a five-line script that puts the
repository on ``sys.path`` and calls :func:`main`. A launcher rather than a packaged
entry point, because the repository is no distribution: a ``pyproject.toml`` installed
in editable mode would need a build backend fetched at install time, outside the locked,
hash-checked dependency set.

The app is built with ``create_app(for_cli=True)`` (web/cli.py ``cli_app``): no HTTP auth
settings are read, and a configuration error is one line naming the variable, exit 2.
Unlike ``flask``, ``crontick`` never loads a ``.env`` file: ``.env`` holds deploy.sh's
settings for Cloud Run, which a local command must not pick up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask.cli import FlaskGroup, ScriptInfo

from web.cli import ConfigUsageError, cli_app

REPO = Path(__file__).resolve().parents[1]


class CrontickGroup(FlaskGroup):
    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        # FlaskGroup prints a traceback when the app fails to load while listing commands
        # (``crontick --help``); a configuration error is one line and exit 2 here too.
        try:
            ctx.ensure_object(ScriptInfo).load_app()
        except ConfigUsageError as exc:
            exc.show()
            ctx.exit(exc.exit_code)
        return super().list_commands(ctx)


def main(argv: list[str] | None = None) -> int:
    group = CrontickGroup(name="crontick", create_app=cli_app, load_dotenv=False, help="crontick's operator commands (the same as `flask --app main`).")
    group.main(args=argv, prog_name="crontick")
    return 0


LAUNCHER = """#!{python}
# crontick: `flask --app main` under its own name. Written by `make venv` (web/cli_entry.py).
import sys
sys.path.insert(0, {repo!r})
from web.cli_entry import main
sys.exit(main())
"""


def write_launcher(path: str, python: str | None = None) -> None:
    """Write the ``crontick`` script at ``path`` for ``python`` (default: this interpreter, unresolved:
    a venv's ``bin/python`` is a symlink whose target would leave the venv)."""
    text = LAUNCHER.format(python=python or sys.executable, repo=str(REPO))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-launcher"] and len(sys.argv) == 3:
        write_launcher(sys.argv[2])
    else:
        sys.exit(main())
