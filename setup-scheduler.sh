#!/usr/bin/env bash
# Cloud Scheduler (and, with SCHEDULER_STORAGE=firestore, Firestore) for a deployed crontick service.
#
#   ./setup-scheduler.sh [setup]   APIs, invoker service account, run.invoker binding, Firestore indexes,
#                                  exemptions and TTLs, then create or update the job POSTing to $URL/cron/tick
#                                  (the TTLs, on expire_at: execution records and tick records after
#                                  SCHEDULER_HISTORY_DAYS, finished jobs after SCHEDULER_RETENTION_DAYS)
#   ./setup-scheduler.sh pause | resume
#   ./setup-scheduler.sh run       force one tick now (gcloud scheduler jobs run)
#   ./setup-scheduler.sh status    describe the job
#
# Idempotent: what exists is described and updated, not created again.
# Settings come from the environment, then from $ENV_FILE (default: .env beside
# this script) for names the environment does not set: the environment wins.
#   required: PROJECT_ID (or GOOGLE_CLOUD_PROJECT), REGION, SERVICE_NAME
#   optional (default): INVOKER_SERVICE_ACCOUNT (${SERVICE_NAME}-invoker; a name or an email),
#     SCHEDULER_JOB_NAME (${SERVICE_NAME}-tick), SCHEDULER_LOCATION ($REGION),
#     SCHEDULER_CADENCE (* * * * *), SCHEDULER_TIME_ZONE (Etc/UTC), SCHEDULER_ATTEMPT_DEADLINE (180s),
#     SCHEDULER_MAX_RETRY_ATTEMPTS (2), SCHEDULER_MIN_BACKOFF (10s), SCHEDULER_MAX_BACKOFF (60s),
#     SCHEDULER_STORAGE (json), FIRESTORE_DATABASE ((default)),
#     FIRESTORE_JOBS_COLLECTION (scheduler_jobs), FIRESTORE_EXECUTIONS_COLLECTION (scheduler_executions),
#     FIRESTORE_TICKS_COLLECTION (scheduler_ticks): the service's collections; every index, exemption
#       and TTL is made for these names (see firestore_plan),
#     FIRESTORE_INDEXES_FILE (firestore.indexes.json beside this script: a template with the default names),
#     OIDC_AUDIENCE and OIDC_ALLOWED_EMAILS: when set, checked against the service URL and the invoker.
#   with SCHEDULER_DISPATCH=cloud_tasks also: the Cloud Tasks queue (created or updated), its service
#     account (created), roles/run.invoker for it on the service, and roles/iam.serviceAccountUser
#     (iam.serviceAccounts.actAs) on it for the runtime account, which creates tasks that carry its token,
#     and roles/cloudtasks.enqueuer on the queue for the runtime account.
#     required: CLOUD_TASKS_QUEUE (projects/P/locations/L/queues/Q), CLOUD_TASKS_SERVICE_ACCOUNT (an email);
#     optional (default): RUNTIME_SERVICE_ACCOUNT (the service's own), TASKS_QUEUE_MAX_DISPATCHES_PER_SECOND (100),
#     TASKS_QUEUE_MAX_CONCURRENT_DISPATCHES (100), TASKS_QUEUE_MAX_ATTEMPTS (5), TASKS_QUEUE_MIN_BACKOFF (10s),
#     TASKS_QUEUE_MAX_BACKOFF (300s); CLOUD_TASKS_TARGET_URL and TASKS_ALLOWED_EMAILS: when set, checked
#     against the service URL and the tasks account.
#   with CONSOLE_AUTH=iap also (the operator console behind Identity-Aware Proxy; docs/operating.md), on the
#     console's own service CONSOLE_SERVICE_NAME (default ${SERVICE_NAME}-console: the same image and store,
#     deployed first; never the service Cloud Scheduler calls, whose tokens IAP would refuse): the IAP API,
#     IAP's service agent with roles/run.invoker on it, IAP turned on (gcloud beta run services update --iap),
#     and roles/iap.httpsResourceAccessor on it for each CONSOLE_ADMIN_EMAILS and CONSOLE_VIEWER_EMAILS entry
#     (an email: user:, a *.gserviceaccount.com email: serviceAccount:, @DOMAIN: domain:).
#     required: CONSOLE_ADMIN_EMAILS or CONSOLE_VIEWER_EMAILS; IAP_AUDIENCE: when set, checked against
#     /projects/PROJECT_NUMBER/locations/REGION/services/CONSOLE_SERVICE_NAME, the audience IAP signs for.
#
# Every command is printed (prefixed "+") before it runs; the first failing one stops the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="setup-scheduler.sh"

# die, show, run, load_env_file, require
# shellcheck source=scripts/common.sh
source "$ROOT/scripts/common.sh"

note() {
  echo "$PROG: $*" >&2
}

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Run a describe-like command quietly; its status says whether the resource exists.
exists() {
  show "$@"
  "$@" >/dev/null 2>&1
}

settings() {
  load_env_file
  PROJECT_ID="${PROJECT_ID:-${GOOGLE_CLOUD_PROJECT:-}}"
  require PROJECT_ID REGION SERVICE_NAME
  INVOKER_SERVICE_ACCOUNT="${INVOKER_SERVICE_ACCOUNT:-$SERVICE_NAME-invoker}"
  if [[ "$INVOKER_SERVICE_ACCOUNT" == *@* ]]; then
    INVOKER_EMAIL="$INVOKER_SERVICE_ACCOUNT"
    INVOKER_NAME="${INVOKER_SERVICE_ACCOUNT%%@*}"
  else
    INVOKER_NAME="$INVOKER_SERVICE_ACCOUNT"
    INVOKER_EMAIL="$INVOKER_NAME@$PROJECT_ID.iam.gserviceaccount.com"
  fi
  JOB="${SCHEDULER_JOB_NAME:-$SERVICE_NAME-tick}"
  LOCATION="${SCHEDULER_LOCATION:-$REGION}"
  STORAGE="${SCHEDULER_STORAGE:-json}"
  STORAGE="${STORAGE,,}"
  DISPATCH="${SCHEDULER_DISPATCH:-inline}"
  DISPATCH="${DISPATCH,,}"
  [[ "$DISPATCH" == "inline" || "$DISPATCH" == "cloud_tasks" ]] || die "SCHEDULER_DISPATCH=$DISPATCH: must be inline or cloud_tasks"
  DATABASE="${FIRESTORE_DATABASE:-(default)}"
  JOBS_COLLECTION="${FIRESTORE_JOBS_COLLECTION:-scheduler_jobs}"
  EXECUTIONS_COLLECTION="${FIRESTORE_EXECUTIONS_COLLECTION:-scheduler_executions}"
  TICKS_COLLECTION="${FIRESTORE_TICKS_COLLECTION:-scheduler_ticks}"
  CONSOLE_MODE="${CONSOLE_AUTH:-}"
  CONSOLE_MODE="${CONSOLE_MODE,,}"
  CONSOLE_SERVICE="${CONSOLE_SERVICE_NAME:-$SERVICE_NAME-console}"
}

# A collection id Firestore accepts and that fits one gcloud flag value.
check_collection() {
  local name="$1" value="$2"
  if [[ "$value" == */* || "$value" =~ [[:space:],=] || "$value" =~ ^__.*__$ || "$value" == "." || "$value" == ".." ]]; then
    die "$name=$value is not a usable Firestore collection id (no '/', spaces, ',' or '=', not . or .. or __name__)"
  fi
}

enable_apis() {
  local apis=(run.googleapis.com cloudscheduler.googleapis.com iamcredentials.googleapis.com)
  [[ "$STORAGE" == "firestore" ]] && apis+=(firestore.googleapis.com)
  [[ "$DISPATCH" == "cloud_tasks" ]] && apis+=(cloudtasks.googleapis.com)
  [[ "$CONSOLE_MODE" == "iap" ]] && apis+=(iap.googleapis.com)
  run gcloud services enable "${apis[@]}" "--project=$PROJECT_ID"
}

ensure_invoker() {
  if exists gcloud iam service-accounts describe "$INVOKER_EMAIL" "--project=$PROJECT_ID"; then
    note "service account $INVOKER_EMAIL exists"
  else
    note "service account $INVOKER_EMAIL not found; creating it"
    run gcloud iam service-accounts create "$INVOKER_NAME" "--project=$PROJECT_ID" \
      "--display-name=Cloud Scheduler invoker of $SERVICE_NAME"
  fi
  run gcloud run services add-iam-policy-binding "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" \
    "--member=serviceAccount:$INVOKER_EMAIL" --role=roles/run.invoker --condition=None
}

# The app verifies what Cloud Scheduler sends: refuse a job that would get 401/403 every minute.
check_app_agrees() {
  local url="$1" entry entries allowed=0
  if [[ -n "${OIDC_AUDIENCE:-}" && "${OIDC_AUDIENCE%/}" != "$url" ]]; then
    die "OIDC_AUDIENCE=$OIDC_AUDIENCE but the job's token audience is the service URL $url; every tick would get 401. Deploy with OIDC_AUDIENCE=$url (./deploy.sh deploy) and run this again"
  fi
  if [[ -n "${OIDC_ALLOWED_EMAILS:-}" ]]; then
    IFS=',' read -r -a entries <<<"$OIDC_ALLOWED_EMAILS"
    for entry in "${entries[@]}"; do
      entry="${entry//[[:space:]]/}"
      if [[ "${entry,,}" == "${INVOKER_EMAIL,,}" || ("$entry" == @* && "${INVOKER_EMAIL,,}" == *"${entry,,}") ]]; then
        allowed=1
      fi
    done
    ((allowed)) || die "OIDC_ALLOWED_EMAILS=$OIDC_ALLOWED_EMAILS does not allow the invoker $INVOKER_EMAIL; every tick would get 403"
  fi
}

# What $1 (Firebase format) asks of Firestore, a tab-separated line each:
#   index  FLAGS...          one composite index (`indexes composite create`)
#   exempt FIELD GROUP       a fieldOverride with "indexes": [] (`indexes fields update --disable-indexes`)
#   ttl    FIELD GROUP       a fieldOverride with "ttl": true, and always expire_at of the executions collection
# The file is a template written with the default collection names; each collection group
# that is one of them (or a collection the store derives from one: <jobs>_idempotency,
# <ticks>_occurrences) becomes the configured name. Other group names are kept as written.
firestore_plan() {
  python3 -c '
import json, sys
path, database, jobs, executions, ticks = sys.argv[1:6]
with open(path, encoding="utf-8") as f:
    spec = json.load(f)
names = {
    "scheduler_jobs": jobs,
    "scheduler_jobs_idempotency": jobs + "_idempotency",
    "scheduler_executions": executions,
    "scheduler_ticks": ticks,
    "scheduler_ticks_occurrences": ticks + "_occurrences",
}
def group(entry):
    return names.get(entry["collectionGroup"], entry["collectionGroup"])
scopes = {"COLLECTION": "collection", "COLLECTION_GROUP": "collection-group"}
lines = []
for index in spec.get("indexes", []):
    args = ["index", "--collection-group=" + group(index), "--database=" + database,
            "--query-scope=" + scopes[index.get("queryScope", "COLLECTION")]]
    for field in index["fields"]:
        config = "field-path=" + field["fieldPath"]
        if "order" in field:
            config += ",order=" + field["order"].lower()
        elif "arrayConfig" in field:
            config += ",array-config=" + field["arrayConfig"].lower()
        else:
            sys.exit("%s: unsupported index field %r" % (path, field))
        args.append("--field-config=" + config)
    lines.append(args)
ttls = [("expire_at", executions)]
for override in spec.get("fieldOverrides", []):
    where = (override["fieldPath"], group(override))
    if override.get("ttl") and where not in ttls:
        ttls.append(where)
    if "indexes" in override:
        if override["indexes"]:
            sys.exit("%s: only index exemptions (\"indexes\": []) are supported in fieldOverrides, not %r" % (path, override))
        lines.append(["exempt", *where])
lines += [["ttl", *where] for where in ttls]
for args in lines:
    if any("\t" in arg or "\n" in arg for arg in args):
        sys.exit("%s: tab or newline in %r" % (path, args))
    print("\t".join(args))
' "$1" "$DATABASE" "$JOBS_COLLECTION" "$EXECUTIONS_COLLECTION" "$TICKS_COLLECTION"
}

create_index() {
  local err rc=0
  show gcloud firestore indexes composite create "$@"
  err="$(gcloud firestore indexes composite create "$@" 2>&1 >/dev/null)" || rc=$?
  if ((rc == 0)); then
    return 0
  fi
  if [[ "${err,,}" == *"already exists"* || "$err" == *ALREADY_EXISTS* ]]; then
    note "index exists already"
    return 0
  fi
  echo "$err" >&2
  echo "$PROG: error: command failed (exit $rc): gcloud firestore indexes composite create" >&2
  exit "$rc"
}

setup_firestore() {
  local file="${FIRESTORE_INDEXES_FILE:-$ROOT/firestore.indexes.json}" plan line kind args_line args
  [[ -f "$file" ]] || die "SCHEDULER_STORAGE=firestore but the index file $file does not exist (set FIRESTORE_INDEXES_FILE)"
  check_collection FIRESTORE_JOBS_COLLECTION "$JOBS_COLLECTION"
  check_collection FIRESTORE_EXECUTIONS_COLLECTION "$EXECUTIONS_COLLECTION"
  check_collection FIRESTORE_TICKS_COLLECTION "$TICKS_COLLECTION"
  note "Firestore collections: jobs=$JOBS_COLLECTION executions=$EXECUTIONS_COLLECTION ticks=$TICKS_COLLECTION (database $DATABASE)"
  plan="$(firestore_plan "$file")" || die "cannot read $file (see above)"
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    IFS=$'\t' read -r kind args_line <<<"$line"
    IFS=$'\t' read -r -a args <<<"$args_line"
    case "$kind" in
      index) create_index "${args[@]}" "--project=$PROJECT_ID" ;;
      exempt)
        run gcloud firestore indexes fields update "${args[0]}" "--collection-group=${args[1]}" "--database=$DATABASE" \
          --disable-indexes "--project=$PROJECT_ID"
        ;;
      ttl)
        run gcloud firestore fields ttls update "${args[0]}" "--collection-group=${args[1]}" "--database=$DATABASE" \
          --enable-ttl "--project=$PROJECT_ID"
        ;;
    esac
  done <<<"$plan"
}

# Whether the comma list $1 (emails, or "@domain" entries) admits the email $2.
allows() {
  local entry entries
  IFS=',' read -r -a entries <<<"$1"
  for entry in "${entries[@]}"; do
    entry="${entry//[[:space:]]/}"
    if [[ "${entry,,}" == "${2,,}" || ("$entry" == @* && "${2,,}" == *"${entry,,}") ]]; then
      return 0
    fi
  done
  return 1
}

# SCHEDULER_DISPATCH=cloud_tasks: what the app reads must match what is set up here, before anything changes.
tasks_settings() {
  local url="$1"
  require CLOUD_TASKS_QUEUE CLOUD_TASKS_SERVICE_ACCOUNT
  if ! [[ "$CLOUD_TASKS_QUEUE" =~ ^projects/([a-z][a-z0-9.:-]*[a-z0-9])/locations/([a-z][a-z0-9-]*[a-z0-9])/queues/([A-Za-z0-9-]{1,100})$ ]]; then
    die "CLOUD_TASKS_QUEUE=$CLOUD_TASKS_QUEUE: must be a full queue name, projects/PROJECT/locations/LOCATION/queues/QUEUE"
  fi
  QUEUE_PROJECT="${BASH_REMATCH[1]}"
  QUEUE_LOCATION="${BASH_REMATCH[2]}"
  QUEUE_ID="${BASH_REMATCH[3]}"
  [[ "$CLOUD_TASKS_SERVICE_ACCOUNT" =~ ^[^@[:space:]]+@[^@[:space:]]+$ ]] ||
    die "CLOUD_TASKS_SERVICE_ACCOUNT=$CLOUD_TASKS_SERVICE_ACCOUNT: must be a service account email"
  TASKS_EMAIL="$CLOUD_TASKS_SERVICE_ACCOUNT"
  if [[ -n "${CLOUD_TASKS_TARGET_URL:-}" && "$CLOUD_TASKS_TARGET_URL" != "$url/tasks/run" ]]; then
    die "CLOUD_TASKS_TARGET_URL=$CLOUD_TASKS_TARGET_URL but the service's /tasks/run is $url/tasks/run; every task would miss it. Deploy with CLOUD_TASKS_TARGET_URL=$url/tasks/run (./deploy.sh deploy) and run this again"
  fi
  if [[ -n "${TASKS_ALLOWED_EMAILS:-}" ]] && ! allows "$TASKS_ALLOWED_EMAILS" "$TASKS_EMAIL"; then
    die "TASKS_ALLOWED_EMAILS=$TASKS_ALLOWED_EMAILS does not allow the tasks account $TASKS_EMAIL; every task would get 403"
  fi
  if [[ -z "${CLOUD_TASKS_TARGET_URL:-}" ]]; then
    note "deploy with CLOUD_TASKS_TARGET_URL=$url/tasks/run (./deploy.sh deploy), where the tasks go"
  fi
}

setup_tasks() {
  local runtime verb
  if exists gcloud iam service-accounts describe "$TASKS_EMAIL" "--project=$PROJECT_ID"; then
    note "service account $TASKS_EMAIL exists"
  else
    note "service account $TASKS_EMAIL not found; creating it"
    run gcloud iam service-accounts create "${TASKS_EMAIL%%@*}" "--project=$PROJECT_ID" \
      "--display-name=Cloud Tasks invoker of $SERVICE_NAME"
  fi
  run gcloud run services add-iam-policy-binding "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" \
    "--member=serviceAccount:$TASKS_EMAIL" --role=roles/run.invoker --condition=None
  runtime="${RUNTIME_SERVICE_ACCOUNT:-}"
  if [[ -z "$runtime" ]]; then
    show gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" "--format=value(spec.template.spec.serviceAccountName)"
    runtime="$(gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" \
      "--format=value(spec.template.spec.serviceAccountName)")" || die "cannot read the runtime service account of $SERVICE_NAME (see above)"
    [[ -n "$runtime" ]] || die "service $SERVICE_NAME names no runtime service account; set RUNTIME_SERVICE_ACCOUNT (the account it runs as)"
  fi
  # Creating a task that carries the tasks account's OIDC token needs actAs on that account.
  run gcloud iam service-accounts add-iam-policy-binding "$TASKS_EMAIL" "--project=$PROJECT_ID" \
    "--member=serviceAccount:$runtime" --role=roles/iam.serviceAccountUser --condition=None
  if exists gcloud tasks queues describe "$QUEUE_ID" "--location=$QUEUE_LOCATION" "--project=$QUEUE_PROJECT"; then
    verb=update
  else
    verb=create
  fi
  run gcloud tasks queues "$verb" "$QUEUE_ID" "--location=$QUEUE_LOCATION" "--project=$QUEUE_PROJECT" \
    "--max-dispatches-per-second=${TASKS_QUEUE_MAX_DISPATCHES_PER_SECOND:-100}" \
    "--max-concurrent-dispatches=${TASKS_QUEUE_MAX_CONCURRENT_DISPATCHES:-100}" \
    "--max-attempts=${TASKS_QUEUE_MAX_ATTEMPTS:-5}" \
    "--min-backoff=${TASKS_QUEUE_MIN_BACKOFF:-10s}" \
    "--max-backoff=${TASKS_QUEUE_MAX_BACKOFF:-300s}"
  # The runtime account creates the tasks: without cloudtasks.enqueuer on the queue every
  # CreateTask is refused and each run waits out its lease, again and again.
  run gcloud tasks queues add-iam-policy-binding "$QUEUE_ID" "--location=$QUEUE_LOCATION" "--project=$QUEUE_PROJECT" \
    "--member=serviceAccount:$runtime" --role=roles/cloudtasks.enqueuer
  note "queue $CLOUD_TASKS_QUEUE ${verb}d: tasks POST to /tasks/run as $TASKS_EMAIL"
}

# CONSOLE_AUTH=iap: the console's service, who gets through IAP, and the audience the app must
# expect; before anything changes.
iap_settings() {
  local name list entry entries member known
  if [[ "$CONSOLE_SERVICE" == "$SERVICE_NAME" ]]; then
    die "CONSOLE_SERVICE_NAME=$CONSOLE_SERVICE is the service Cloud Scheduler calls: IAP in front of it would refuse every tick (IAP takes tokens for its own OAuth client, not the service URL). Deploy the console as a second service of the same image and store (SERVICE_NAME=$SERVICE_NAME-console ./deploy.sh deploy) and name that one"
  fi
  [[ -n "${CONSOLE_ADMIN_EMAILS:-}${CONSOLE_VIEWER_EMAILS:-}" ]] ||
    die "CONSOLE_AUTH=iap needs CONSOLE_ADMIN_EMAILS or CONSOLE_VIEWER_EMAILS: nobody could open the console"
  IAP_MEMBERS=()
  for name in CONSOLE_ADMIN_EMAILS CONSOLE_VIEWER_EMAILS; do
    list="${!name:-}"
    IFS=',' read -r -a entries <<<"$list"
    for entry in "${entries[@]}"; do
      entry="${entry//[[:space:]]/}"
      [[ -n "$entry" ]] || continue
      if [[ "$entry" =~ ^@[^@]+\.[^@]+$ ]]; then
        member="domain:${entry#@}"
      elif [[ "$entry" =~ ^[^@]+@[^@]+\.gserviceaccount\.com$ ]]; then
        member="serviceAccount:$entry"
      elif [[ "$entry" =~ ^[^@]+@[^@]+\.[^@]+$ ]]; then
        member="user:$entry"
      else
        die "$name: '$entry' is neither an email nor an @domain entry"
      fi
      IAP_MEMBERS+=("$member")
    done
  done
  known=" "
  for member in "${IAP_MEMBERS[@]}"; do
    [[ "${known,,}" == *" ${member,,} "* ]] || known+="$member "
  done
  read -r -a IAP_MEMBERS <<<"$known"
  show gcloud run services describe "$CONSOLE_SERVICE" "--project=$PROJECT_ID" "--region=$REGION" "--format=value(status.url)"
  CONSOLE_URL="$(gcloud run services describe "$CONSOLE_SERVICE" "--project=$PROJECT_ID" "--region=$REGION" "--format=value(status.url)")" ||
    die "cannot find the console's service $CONSOLE_SERVICE in $REGION (see above); deploy it first: SERVICE_NAME=$CONSOLE_SERVICE ./deploy.sh deploy, with CONSOLE_AUTH=iap"
  show gcloud projects describe "$PROJECT_ID" "--format=value(projectNumber)"
  PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" "--format=value(projectNumber)")" ||
    die "cannot read the project number of $PROJECT_ID (see above)"
  [[ "$PROJECT_NUMBER" =~ ^[0-9]+$ ]] || die "project $PROJECT_ID answered no project number ('$PROJECT_NUMBER')"
  IAP_AUD="/projects/$PROJECT_NUMBER/locations/$REGION/services/$CONSOLE_SERVICE"
  if [[ -n "${IAP_AUDIENCE:-}" && "$IAP_AUDIENCE" != "$IAP_AUD" ]]; then
    die "IAP_AUDIENCE=$IAP_AUDIENCE but IAP signs for $IAP_AUD; every console page would get 401. Deploy with IAP_AUDIENCE=$IAP_AUD (./deploy.sh deploy) and run this again"
  fi
  if [[ -z "${IAP_AUDIENCE:-}" ]]; then
    note "deploy $CONSOLE_SERVICE with IAP_AUDIENCE=$IAP_AUD, the audience IAP signs for"
  fi
}

setup_iap() {
  local member
  run gcloud beta services identity create --service=iap.googleapis.com "--project=$PROJECT_ID"
  # IAP calls the service as its service agent once it has let a person through.
  run gcloud run services add-iam-policy-binding "$CONSOLE_SERVICE" "--project=$PROJECT_ID" "--region=$REGION" \
    "--member=serviceAccount:service-$PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com" --role=roles/run.invoker --condition=None
  run gcloud beta run services update "$CONSOLE_SERVICE" "--project=$PROJECT_ID" "--region=$REGION" --iap
  for member in "${IAP_MEMBERS[@]}"; do
    run gcloud beta iap web add-iam-policy-binding --resource-type=cloud-run "--service=$CONSOLE_SERVICE" "--region=$REGION" \
      "--project=$PROJECT_ID" "--member=$member" --role=roles/iap.httpsResourceAccessor --condition=None
  done
  note "IAP is on for $CONSOLE_SERVICE ($CONSOLE_URL): ${#IAP_MEMBERS[@]} principal(s) may pass it; the console decides who may act (CONSOLE_ADMIN_EMAILS)"
}

upsert_job() {
  local url="$1" verb
  if exists gcloud scheduler jobs describe "$JOB" "--location=$LOCATION" "--project=$PROJECT_ID"; then
    verb=update
  else
    verb=create
  fi
  run gcloud scheduler jobs "$verb" http "$JOB" "--location=$LOCATION" "--project=$PROJECT_ID" \
    "--schedule=${SCHEDULER_CADENCE:-* * * * *}" \
    "--time-zone=${SCHEDULER_TIME_ZONE:-Etc/UTC}" \
    "--uri=$url/cron/tick" \
    --http-method=POST \
    "--oidc-service-account-email=$INVOKER_EMAIL" \
    "--oidc-token-audience=$url" \
    "--attempt-deadline=${SCHEDULER_ATTEMPT_DEADLINE:-180s}" \
    "--max-retry-attempts=${SCHEDULER_MAX_RETRY_ATTEMPTS:-2}" \
    "--min-backoff=${SCHEDULER_MIN_BACKOFF:-10s}" \
    "--max-backoff=${SCHEDULER_MAX_BACKOFF:-60s}" \
    "--description=crontick: POST /cron/tick of $SERVICE_NAME"
  note "job $JOB ${verb}d: ${SCHEDULER_CADENCE:-* * * * *} -> $url/cron/tick"
}

cmd_setup() {
  local url
  enable_apis
  show gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" "--format=value(status.url)"
  url="$(gcloud run services describe "$SERVICE_NAME" "--project=$PROJECT_ID" "--region=$REGION" "--format=value(status.url)")" ||
    die "cannot read the URL of service $SERVICE_NAME in $REGION (see above); deploy it first: ./deploy.sh deploy"
  [[ -n "$url" ]] || die "service $SERVICE_NAME in $REGION has no URL yet; deploy it first: ./deploy.sh deploy"
  check_app_agrees "$url"
  if [[ "$DISPATCH" == "cloud_tasks" ]]; then
    tasks_settings "$url"
  fi
  if [[ "$CONSOLE_MODE" == "iap" ]]; then
    iap_settings
  fi
  ensure_invoker
  if [[ "$DISPATCH" == "cloud_tasks" ]]; then
    setup_tasks
  fi
  if [[ "$CONSOLE_MODE" == "iap" ]]; then
    setup_iap
  fi
  if [[ "$STORAGE" == "firestore" ]]; then
    setup_firestore
  fi
  upsert_job "$url"
}

main() {
  local verb="${1:-setup}"
  [[ $# -gt 0 ]] && shift
  [[ $# -eq 0 ]] || usage
  case "$verb" in
    setup | pause | resume | run | status) ;;
    -h | --help | help) usage ;;
    *) echo "$PROG: unknown verb '$verb'" >&2 && usage ;;
  esac
  settings
  case "$verb" in
    setup) cmd_setup ;;
    pause | resume | run) run gcloud scheduler jobs "$verb" "$JOB" "--location=$LOCATION" "--project=$PROJECT_ID" ;;
    status) run gcloud scheduler jobs describe "$JOB" "--location=$LOCATION" "--project=$PROJECT_ID" ;;
  esac
}

main "$@"
