#!/usr/bin/env bash
# Build and roll out crontick on Cloud Run.
#
#   ./deploy.sh deploy                 build, deploy a revision that takes the traffic a plain deploy gets
#   ./deploy.sh deploy-tag TAG         build, deploy a revision with no traffic, reachable at its TAG URL
#   ./deploy.sh check TAG              GET /health on the TAG URL with your identity token
#   ./deploy.sh promote TAG [PERCENT]  health check, then send PERCENT (default 100) of traffic to TAG
#   ./deploy.sh rollback [REVISION]    100% of traffic to REVISION (default: the revision before the serving one)
#   ./deploy.sh status                 the service's URL, traffic split and recent revisions
#
# Settings come from the environment, then from $ENV_FILE (default: .env beside
# this script) for names the environment does not set: the environment wins.
#   required: PROJECT_ID (or GOOGLE_CLOUD_PROJECT), REGION, SERVICE_NAME;
#             RUNTIME_SERVICE_ACCOUNT for deploy and deploy-tag
#   optional: IMAGE (deploy this image instead of building from source with --source .),
#             DEPLOY_EXTRA_FLAGS (more `gcloud run deploy` flags, split on spaces),
#             CURL_MAX_TIME (seconds, default 30)
# The service's own variables, the names in _VARIABLES of scheduler/settings.py
# (ENVIRONMENT, AUTH_MODE, OIDC_*, SCHEDULER_*, FIRESTORE_*, ...), are passed to
# the revision when set (GOOGLE_CLOUD_PROJECT defaults to PROJECT_ID); others are not.
# With SCHEDULER_DISPATCH=cloud_tasks, CLOUD_TASKS_QUEUE, CLOUD_TASKS_TARGET_URL and
# CLOUD_TASKS_SERVICE_ACCOUNT are required too, and the request timeout is 1800 s (a task
# runs its job inside one /tasks/run request, for up to 30 minutes) instead of 300 s.
# With SCHEDULER_STORAGE=postgres, SCHEDULER_POSTGRES_DSN is required (or given as a secret:
# DEPLOY_EXTRA_FLAGS="--set-secrets=SCHEDULER_POSTGRES_DSN=SECRET:latest"), and CLOUD_SQL_INSTANCE
# (PROJECT:REGION:INSTANCE) adds --add-cloudsql-instances, which mounts /cloudsql/INSTANCE.
#
# Every command is printed (prefixed "+") before it runs; the first failing one stops the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="deploy.sh"

# die, show, run, load_env_file, require
# shellcheck source=scripts/common.sh
source "$ROOT/scripts/common.sh"

# Separates KEY=VALUE pairs in --set-env-vars (gcloud's ^DELIM^ escaping), because
# OIDC_ALLOWED_EMAILS and ADMIN_EMAILS hold commas.
ENV_DELIM="|"

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

settings() {
  load_env_file
  PROJECT_ID="${PROJECT_ID:-${GOOGLE_CLOUD_PROJECT:-}}"
  require PROJECT_ID REGION SERVICE_NAME
  GOOGLE_CLOUD_PROJECT="${GOOGLE_CLOUD_PROJECT:-$PROJECT_ID}"
}

check_app_settings() {
  require RUNTIME_SERVICE_ACCOUNT
  local auth="${AUTH_MODE:-oidc}"
  auth="${auth,,}"
  if [[ "$auth" == "oidc" || "$auth" == "iam" ]]; then
    require OIDC_AUDIENCE OIDC_ALLOWED_EMAILS
  elif [[ "$auth" == "disabled" && "${ENVIRONMENT:-}" == "production" ]]; then
    die "AUTH_MODE=disabled is refused with ENVIRONMENT=production"
  fi
  local storage="${SCHEDULER_STORAGE:-json}"
  if [[ "${storage,,}" == "postgres" && "${DEPLOY_EXTRA_FLAGS:-}" != *"SCHEDULER_POSTGRES_DSN="* ]]; then
    require SCHEDULER_POSTGRES_DSN
  fi
  local dispatch="${SCHEDULER_DISPATCH:-inline}"
  dispatch="${dispatch,,}"
  if [[ "$dispatch" == "cloud_tasks" ]]; then
    require CLOUD_TASKS_QUEUE CLOUD_TASKS_TARGET_URL CLOUD_TASKS_SERVICE_ACCOUNT
    REQUEST_TIMEOUT=1800
  elif [[ "$dispatch" == "inline" ]]; then
    REQUEST_TIMEOUT=300
  else
    die "SCHEDULER_DISPATCH=$SCHEDULER_DISPATCH: must be inline or cloud_tasks"
  fi
}

# The environment variable names the service reads: _VARIABLES of scheduler/settings.py, in order.
app_variables() {
  python3 -c '
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in ast.walk(tree):
    target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
    if isinstance(target, ast.Name) and target.id == "_VARIABLES" and isinstance(node.value, ast.Dict):
        for value in node.value.values:
            print(value.elts[0].value)
' "${APP_SETTINGS_FILE:-$ROOT/scheduler/settings.py}"
}

env_vars_flag() {
  local names name value pairs=""
  names="$(app_variables)" || die "cannot read the service's variables (_VARIABLES) from ${APP_SETTINGS_FILE:-$ROOT/scheduler/settings.py}"
  [[ -n "$names" ]] || die "no _VARIABLES found in ${APP_SETTINGS_FILE:-$ROOT/scheduler/settings.py}"
  for name in $names; do
    [[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "odd variable name '$name' in _VARIABLES"
    value="${!name:-}"
    [[ -n "$value" ]] || continue
    [[ "$value" != *"$ENV_DELIM"* ]] || die "$name contains '$ENV_DELIM', which --set-env-vars uses as its separator here"
    pairs+="${pairs:+$ENV_DELIM}$name=$value"
  done
  printf '%s' "--set-env-vars=^$ENV_DELIM^$pairs"
}

# gcloud run deploy, with $@ added (traffic and tag flags).
deploy_revision() {
  check_app_settings
  local source_flag env_flag extra=()
  if [[ -n "${IMAGE:-}" ]]; then
    source_flag="--image=$IMAGE"
  else
    source_flag="--source=."
  fi
  read -r -a extra <<<"${DEPLOY_EXTRA_FLAGS:-}"
  [[ -z "${CLOUD_SQL_INSTANCE:-}" ]] || extra+=("--add-cloudsql-instances=$CLOUD_SQL_INSTANCE")
  env_flag="$(env_vars_flag)"
  cd "$ROOT"
  run gcloud run deploy "$SERVICE_NAME" \
    "--project=$PROJECT_ID" "--region=$REGION" "$source_flag" \
    --no-allow-unauthenticated \
    "--service-account=$RUNTIME_SERVICE_ACCOUNT" \
    "$env_flag" \
    "--timeout=$REQUEST_TIMEOUT" --concurrency=8 \
    "$@" "${extra[@]}" --quiet
}

service_json() {
  run gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" --format=json
}

# From `services describe --format=json` on stdin: field ("url" | "revision" | "latest") of traffic tag $1.
tag_field() {
  python3 -c '
import json, sys
tag, field = sys.argv[1], sys.argv[2]
status = json.load(sys.stdin).get("status", {})
if field == "latest":
    print(status.get("latestReadyRevisionName", ""))
    sys.exit(0)
for target in status.get("traffic", []):
    if target.get("tag") == tag:
        print(target.get("url" if field == "url" else "revisionName", ""))
        sys.exit(0)
sys.exit(3)
' "$1" "$2"
}

valid_tag() {
  [[ "$1" =~ ^[a-z][a-z0-9-]{0,45}$ ]] || die "bad tag '$1': lower-case letters, digits and '-', starting with a letter"
}

# GET /health on the URL of traffic tag $1 (service JSON in $2); stops the script unless it answers 2xx.
health_check() {
  local tag="$1" json="$2" url token body
  url="$(tag_field "$tag" url <<<"$json")" || die "service $SERVICE_NAME has no traffic tag '$tag' (deploy one with: ./deploy.sh deploy-tag $tag)"
  [[ -n "$url" ]] || die "tag '$tag' has no URL yet; is its revision ready? (./deploy.sh status)"
  token="$(run gcloud auth print-identity-token)"
  [[ -n "$token" ]] || die "gcloud auth print-identity-token printed no token"
  show curl --silent --show-error --fail --max-time "${CURL_MAX_TIME:-30}" \
    --header "Authorization: Bearer <identity token>" "$url/health"
  if ! body="$(curl --silent --show-error --fail --max-time "${CURL_MAX_TIME:-30}" \
    --header "Authorization: Bearer $token" "$url/health")"; then
    die "health check of tag '$tag' failed: GET $url/health did not answer 2xx; traffic left as it was"
  fi
  echo "$PROG: $url/health: $body" >&2
}

cmd_check() {
  [[ $# -eq 1 ]] || usage
  valid_tag "$1"
  local json
  json="$(service_json)"
  health_check "$1" "$json"
  echo "$PROG: tag $1 is healthy" >&2
}

cmd_deploy() {
  [[ $# -eq 0 ]] || usage
  deploy_revision
}

cmd_deploy_tag() {
  [[ $# -eq 1 ]] || usage
  valid_tag "$1"
  deploy_revision --no-traffic "--tag=$1"
}

cmd_promote() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  local tag="$1" percent="${2:-100}" json revision latest serving
  valid_tag "$tag"
  if ! [[ "$percent" =~ ^[0-9]+$ ]] || ((percent < 1 || percent > 100)); then
    die "PERCENT must be a whole number from 1 to 100, not '$percent'"
  fi
  json="$(service_json)"
  health_check "$tag" "$json"
  revision="$(tag_field "$tag" revision <<<"$json")"
  latest="$(tag_field "$tag" latest <<<"$json")"
  serving="$(serving_revisions <<<"$json" | head -n 1)"
  if ((percent == 100)) && [[ -n "$revision" && "$revision" == "$latest" ]]; then
    # The tag is the newest revision: serve "latest", so the next plain deploy takes traffic again.
    run gcloud run services update-traffic "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" --to-latest
  else
    run gcloud run services update-traffic "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" "--to-tags=$tag=$percent"
  fi
  if [[ -n "$serving" && "$serving" != "$revision" ]]; then
    echo "$PROG: $serving served before; to go back: ./deploy.sh rollback $serving" >&2
  fi
}

# From `services describe --format=json` on stdin: the revisions with traffic, most traffic first.
serving_revisions() {
  python3 -c '
import json, sys
traffic = [t for t in json.load(sys.stdin).get("status", {}).get("traffic", []) if t.get("percent") and t.get("revisionName")]
percents = {}
for t in traffic:
    percents[t["revisionName"]] = percents.get(t["revisionName"], 0) + t["percent"]
for name in sorted(percents, key=lambda n: -percents[n]):
    print(name)
'
}

cmd_rollback() {
  [[ $# -le 1 ]] || usage
  local target="${1:-}" json serving revisions newest
  if [[ -z "$target" ]]; then
    json="$(service_json)"
    serving="$(serving_revisions <<<"$json")"
    [[ -n "$serving" ]] || die "cannot tell which revision serves traffic now; name one: ./deploy.sh rollback REVISION"
    revisions="$(run gcloud run revisions list "--project=$PROJECT_ID" "--region=$REGION" "--service=$SERVICE_NAME" \
      --sort-by=~metadata.creationTimestamp "--format=value(metadata.name)")"
    # The newest revision with traffic is the one rolled back; the revision before it (by creation) takes it all.
    newest="$(awk 'NR == FNR { serving[$1] = 1; next } ($1 in serving) { print $1; exit }' <(echo "$serving") <(echo "$revisions"))"
    [[ -n "$newest" ]] || die "none of the serving revisions ($(echo "$serving" | paste -sd' ')) is listed by gcloud run revisions list"
    target="$(awk -v newest="$newest" 'found && NF { print $1; exit } $1 == newest { found = 1 }' <<<"$revisions")"
    [[ -n "$target" ]] || die "no revision older than $newest to roll back to"
    echo "$PROG: rolling back from $newest to $target" >&2
  fi
  run gcloud run services update-traffic "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" "--to-revisions=$target=100"
}

cmd_status() {
  [[ $# -eq 0 ]] || usage
  run gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" \
    "--format=yaml(status.url,status.latestReadyRevisionName,status.traffic)"
  run gcloud run revisions list "--project=$PROJECT_ID" "--region=$REGION" "--service=$SERVICE_NAME" \
    --sort-by=~metadata.creationTimestamp --limit=5
}

main() {
  local verb="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$verb" in
    deploy | deploy-tag | check | promote | rollback | status) ;;
    -h | --help | help | "") usage ;;
    *) echo "$PROG: unknown verb '$verb'" >&2 && usage ;;
  esac
  settings
  case "$verb" in
    deploy) cmd_deploy "$@" ;;
    deploy-tag) cmd_deploy_tag "$@" ;;
    check) cmd_check "$@" ;;
    promote) cmd_promote "$@" ;;
    rollback) cmd_rollback "$@" ;;
    status) cmd_status "$@" ;;
  esac
}

main "$@"
