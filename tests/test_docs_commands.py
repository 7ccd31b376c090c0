"""Every local command in README.md and docs/*.md runs as written, after ``make run``.

The ```` ```sh ```` blocks are extracted (indented ones in list items too) and run in
document order, each in a fresh ``bash -e -o pipefail`` whose only preparation is the
README's ``. .venv/bin/activate`` (``crontick`` on the PATH), from one working folder
(``.venv`` there links to the checkout's)
where a service runs as ``make run`` starts it: ``python -m web.devserver`` (gunicorn,
the local ticker, the demo job) with ``ENVIRONMENT=local AUTH_MODE=disabled
LOG_FORMAT=text``, its JSON store at ``./data/jobs.json``. Two changes to the text, both
mechanical: ``localhost:8080`` becomes the free port the service got, and the service
also has ``CHAT_ALLOWED_SENDERS=you@example.com``, as docs/chat.md says to start it.
Each block must exit 0; a few must also print what the docs say they print (EXPECTED).

Blocks not run, by design, each named below with the reason:

- cloud blocks: any line calls gcloud, ./deploy.sh, ./setup-scheduler.sh, the runbook's
  ``api``/``token`` helpers, or uses ``$URL``, ``$OIDC_AUDIENCE``, ``.env.prod``/``.env.qa``
  (CLOUD_LINE). In MIXED blocks only those lines are left out and the rest runs.
- SKIPPED: blocks that start long-running services, need a stuck lease, or are the
  test suite and the benchmark themselves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import REPO, free_port

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

CLOUD_LINE = re.compile(
    r"\bgcloud\b|\./deploy\.sh\b|\./setup-scheduler\.sh\b|(^|[\s;&|(]|\$\()(api|token)(\(\)|\s)|\$URL\b|\$OIDC_AUDIENCE\b|\.env\.(prod|qa)\b"
)

# Blocks whose cloud lines are left out and whose other lines run: (file, first line).
MIXED = {
    ("docs/operating.md", "ENV_FILE=.env.prod ./setup-scheduler.sh pause                 # 1. stop the ticks"),
}

# Local blocks not run, with the reason: (file, first line) -> reason.
SKIPPED = {
    ("README.md", "make run    # sets up .venv, serves crontick on 127.0.0.1:8080 (JSON store, auth off), ticks every 60 s"):
        "the harness itself: this test starts what `make run` starts; `make test` is the suite",
    ("README.md", "gcloud emulators firestore start --host-port=127.0.0.1:8681 &"):
        "starts the Firestore emulator and `make run`, long-running (tests/test_emulator_orphans.py starts and stops the emulator)",
    ("README.md", "curl -fsSX POST localhost:8080/api/v1/jobs/$ID:release     # ?force=true for a live lease (409 without)"):
        "needs a stuck lease; tests/test_cli_newcomer.py runs release on a held lease, tests/test_api.py over HTTP",
    ("docs/operating.md", "ID=nightly-report\ncrontick jobs release \"$ID\"                    # --force for a live lease"):
        "needs a stuck lease; tests/test_cli_newcomer.py runs release on a held lease",
    ("docs/chat.md", "CHAT_ALLOWED_SENDERS=you@example.com make run"):
        "starts the service: this test's service runs with that setting",
    ("docs/benchmarks.md", "make bench    # installs requirements-bench.txt into .venv, starts a Firestore emulator, runs every figure on"):
        "the benchmark, the long drills and the suite: minutes each",
}

# What a block must print (stdout and stderr together), beyond exiting 0.
EXPECTED = {
    ("README.md", "# A one-off job (RFC 3339 with an offset), a cron job in a time zone, an interval job:"):
        ["created hello-cli  pending", "pause: hello-cli  paused", "resume: hello-cli  pending", '"jobs_succeeded": 1'],
    ("docs/chat.md", ". .venv/bin/activate"):
        ['"text":"Scheduled `', "(chat_message)", "failed", "DefaultCredentialsError: Your default credentials were not found", "1 execution(s)"],
    ("docs/operating.md", "crontick jobs add --id nightly-report --idempotency-key nightly-report-v1 --type http_request \\"):
        ["created nightly-report  pending"],
    ("docs/operating.md", 'crontick jobs list --status pending --limit 10000 | sed \'$d\' | awk \'{print $1}\' > paused-by-me.txt'):
        ["pause: nightly-report  paused", "resume: nightly-report  pending"],
}

# docs/operating.md says its examples act on the job nightly-report, created under
# "Create a job" at its end: that block runs first.
RUN_FIRST = {"docs/operating.md": "crontick jobs add --id nightly-report --idempotency-key nightly-report-v1 --type http_request \\"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.doc, self.first_line)

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def sh_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        content = path.read_text()
        for match in FENCE.finditer(content):
            if match.group("info").strip() not in ("sh", "bash", "shell"):
                continue
            indent = match.group("indent")
            lines = [line[len(indent):] if line.startswith(indent) else line for line in match.group("body").splitlines()]
            line_no = content.count("\n", 0, match.start()) + 1
            blocks.append(Block(str(path.relative_to(REPO)), line_no, "\n".join(lines)))
    return blocks


def _skip_key(block: Block) -> tuple[str, str] | None:
    """The SKIPPED key naming ``block`` (its first line, or its first two for the blocks that set ID first)."""
    for key in (block.key, (block.doc, "\n".join(block.text.splitlines()[:2]))):
        if key in SKIPPED:
            return key
    return None


def classify(block: Block) -> str:
    """``run``, ``mixed``, ``cloud`` or ``skipped``."""
    if _skip_key(block) is not None:
        return "skipped"
    if block.key in MIXED:
        return "mixed"
    if any(CLOUD_LINE.search(line) for line in block.text.splitlines() if not line.lstrip().startswith("#")):
        return "cloud"
    return "run"


def runnable(block: Block) -> str:
    if classify(block) != "mixed":
        return block.text
    return "\n".join(f": left out, cloud: {line!r}" if CLOUD_LINE.search(line) else line for line in block.text.splitlines())


BLOCKS = sh_blocks()


def ordered_runs() -> list[Block]:
    runs = [b for b in BLOCKS if classify(b) in ("run", "mixed")]
    first = [b for b in runs if RUN_FIRST.get(b.doc) == b.first_line]
    return [*first, *(b for b in runs if b not in first)]


def test_every_block_is_run_or_left_out_by_design():
    kinds = {kind: [b.id for b in BLOCKS if classify(b) == kind] for kind in ("run", "mixed", "cloud", "skipped")}
    # Each SKIPPED, MIXED, EXPECTED and RUN_FIRST entry names exactly one block: none is stale.
    for key in SKIPPED:
        assert sum(_skip_key(b) == key for b in BLOCKS) == 1, key
    for key in (*MIXED, *EXPECTED):
        assert sum(b.key == key for b in BLOCKS) == 1, key
    for doc, first in RUN_FIRST.items():
        assert sum(b.key == (doc, first) for b in BLOCKS) == 1, (doc, first)
    assert len(kinds["skipped"]) == len(SKIPPED) and len(kinds["mixed"]) == len(MIXED)
    # The blocks left out as cloud: the runbook's `api` calls and the deploy scripts.
    assert {b.doc for b in BLOCKS if classify(b) == "cloud"} == {"docs/chat.md", "docs/operating.md", "docs/rollout.md"}
    assert len(kinds["run"]) >= 10, kinds


def test_the_commands_shown_use_crontick_not_flask():
    """One spelling of the CLI in every command block: a bare ``flask`` is whatever flask
    the PATH holds (the prose may say that ``crontick`` is ``flask --app main``)."""
    shown = [(b.id, line) for b in BLOCKS for line in b.text.splitlines() if re.search(r"\bflask\b", line)]
    assert shown == []


@pytest.fixture(scope="module")
def local_service():
    """What ``make run`` starts (without its demo job and its ticker: see below), in a folder
    of its own; yields (workdir, port, shell env)."""
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "crontick").is_file() and (venv_bin / "activate").is_file(), f"{venv_bin} has no crontick: run `make venv`"
    work = Path(tempfile.mkdtemp(prefix="crontick-docs-"))
    (work / ".venv").symlink_to(venv_bin.parent)  # the shell stands in the checkout: `. .venv/bin/activate` works
    no_credentials = work / "gcloud-config"  # "without Google credentials" (docs/chat.md): no ADC to find
    no_credentials.mkdir()
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDULER_", "AUTH_", "OIDC_", "FIRESTORE_", "CHAT_", "LOG_", "K_", "CLOUD_TASKS_", "ENVIRONMENT", "PYTHONPATH", "VIRTUAL_ENV", "GOOGLE_APPLICATION"))}
    shell |= {"CLOUDSDK_CONFIG": str(no_credentials), "HOME": str(work)}
    port = free_port()
    service_env = shell | {"PYTHONPATH": str(REPO), "ENVIRONMENT": "local", "AUTH_MODE": "disabled", "LOG_FORMAT": "text", "PORT": str(port), "CHAT_ALLOWED_SENDERS": "you@example.com"}
    # The blocks' own `crontick tick` runs their jobs; the demo heartbeat (due every minute) and
    # the local ticker would run some of them too whenever a block straddles a minute or a
    # ticker beat, and the counts a block prints would then vary (README.md:58 once printed
    # "jobs_succeeded": 2, the demo job included).
    service_env |= {"CRONTICK_DEMO_JOB": "false", "SCHEDULER_LOCAL_TICK_SECONDS": "86400"}
    log = open(work / "make-run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "web.devserver"], cwd=work, env=service_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (work / "make-run.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the service did not answer /health"
                time.sleep(0.1)
        yield work, port, shell
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("block", ordered_runs(), ids=lambda b: b.id)
def test_block_runs_as_written(local_service, block):
    work, port, shell = local_service
    script = ". .venv/bin/activate\n" + runnable(block).replace("localhost:8080", f"localhost:{port}")
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=shell, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{block.text}\n--- output ---\n{output[-4000:]}"
    for fragment in EXPECTED.get(block.key, []):
        assert fragment in output, f"{block.id} did not print {fragment!r}:\n{output[-4000:]}"
