# Shell helpers shared by deploy.sh and setup-scheduler.sh; sourced, never run.
# The sourcing script sets PROG (its name, for messages) and ROOT (the repository).
# shellcheck shell=bash

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}

# Print a command the way a shell would read it back.
show() {
  local out="+" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@,%+-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  echo "$out" >&2
}

run() {
  show "$@"
  local rc=0
  "$@" || rc=$?
  if ((rc != 0)); then
    echo "$PROG: error: command failed (exit $rc): $1 ${2:-} ${3:-} ${4:-}" >&2
    exit "$rc"
  fi
}

# KEY=VALUE lines of $ENV_FILE, for keys the environment leaves unset. Not sourced: nothing in it runs.
load_env_file() {
  local file="${ENV_FILE:-$ROOT/.env}" line key value
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z "$line" || "$line" == \#* ]] && continue
    line="${line#export }"
    [[ "$line" == *=* ]] || continue
    key="${line%%=*}"
    value="${line#*=}"
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    fi
    if [[ -z "${!key+set}" ]]; then
      export "$key=$value"
    fi
  done <"$file"
}

require() {
  local name missing=()
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
  done
  if ((${#missing[@]})); then
    die "missing required setting(s): ${missing[*]} (set them in the environment or in ${ENV_FILE:-$ROOT/.env})"
  fi
}
