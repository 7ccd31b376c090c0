"""Settings: read once, from an injected environment mapping, with strict casts.

``Settings.from_env(os.environ)`` is called by the app factory; tests pass a
plain dict. A bad or inconsistent value raises :class:`ConfigError` naming the
variable, so the service fails at start rather than at the first tick.
``.env.example`` documents every variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from scheduler.errors import ConfigError
from scheduler.timing import zone

T = TypeVar("T")

ENVIRONMENTS = ("local", "test", "development", "staging", "production")
AUTH_MODES = ("oidc", "iam", "disabled")
STORAGES = ("json", "memory", "firestore", "postgres")
DISPATCH_MODES = ("inline", "cloud_tasks")
LOG_FORMATS = ("auto", "text", "json")
# projects/P/locations/L/queues/Q: Cloud Tasks' own shapes of the ids (a queue id is letters, digits and "-").
CLOUD_TASKS_QUEUE_RE = r"projects/[a-z][a-z0-9.:-]*[a-z0-9]/locations/[a-z][a-z0-9-]*[a-z0-9]/queues/[A-Za-z0-9-]{1,100}"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"  # IAP's ES256 keys, {kid: PEM}
CONSOLE_AUTH_MODES = ("iap", "disabled", "off")
MIN_CONSOLE_SECRET_CHARS = 32


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _host(value: str) -> str:
    """An address to bind (``make run``): an IPv4 or IPv6 literal (brackets optional) or a host name."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _HOST_NAME.fullmatch(value):
        return value
    raise ValueError("must be an IP address or a host name (no port, no scheme)")


def parse_bool(value: str) -> bool:
    """The one reading of a boolean setting: 1/true/yes/on, 0/false/no/off or empty;
    anything else raises ``ValueError``."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: T, cast: Callable[[str], T], *, minimum: float | None = None, choices: tuple[str, ...] = ()) -> T:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = cast(raw.strip())
        except ValueError as exc:
            detail = {int: "must be an integer", float: "must be a number"}.get(cast, str(exc))  # type: ignore[call-overload]
            raise ConfigError(f"{name}={raw!r}: {detail}") from None
        if choices and value not in choices:
            raise ConfigError(f"{name}={raw!r}: must be one of {', '.join(choices)}")
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise ConfigError(f"{name}={raw!r}: must be at least {minimum:g}")
        return value


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed and checked: :meth:`from_env` reads them from the
    environment (``_VARIABLES`` names each one's variable), :meth:`replace` changes some and checks again."""

    environment: str = "local"
    auth_mode: str = "oidc"
    oidc_audience: str | None = None
    oidc_allowed_emails: tuple[str, ...] = ()
    oidc_certs_url: str = GOOGLE_CERTS_URL
    oidc_certs_timeout_seconds: float = 5.0
    admin_emails: tuple[str, ...] = ()
    google_cloud_project: str | None = None
    storage: str = "json"
    json_path: str = "./data/jobs.json"
    json_lock_timeout_seconds: float = 10.0
    max_concurrency: int = 8
    max_abandoned_runs: int = 4  # per job type: runs past their timeout whose threads still run
    lease_seconds: float = 300.0
    tick_budget_seconds: float = 150.0
    job_timeout_seconds: float = 60.0
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    claim_batch_size: int = 500
    history_limit: int = 50
    history_days: int = 30
    retention_days: int = 30  # finished (completed, cancelled) jobs are deleted this long after; 0: never
    handler_modules: tuple[str, ...] = ()
    local_tick_seconds: float = 60.0
    log_level: str = "INFO"
    log_format: str = "auto"  # auto: json on Cloud Run (K_SERVICE) or when stdout is no terminal, else text
    metrics_enabled: bool = False
    metrics_store_cache_seconds: float = 15.0
    host: str = "127.0.0.1"
    shadow_mode: bool = False
    legacy_interval_seconds: float = 60.0
    chat_auth_audience: str | None = None
    chat_allowed_senders: tuple[str, ...] = ()
    chat_default_timezone: str = "UTC"
    chat_api_base_url: str = "https://chat.googleapis.com/v1"
    chat_certs_url: str = "https://www.googleapis.com/service_accounts/v1/metadata/x509/chat@system.gserviceaccount.com"
    firestore_database: str = "(default)"
    firestore_jobs_collection: str = "scheduler_jobs"
    firestore_executions_collection: str = "scheduler_executions"
    firestore_ticks_collection: str = "scheduler_ticks"
    # Secrets (a password in the URL, the signing key) stay out of repr(): a Settings in a log or a traceback.
    postgres_dsn: str | None = field(default=None, repr=False)  # a libpq URL: postgresql://USER:PASSWORD@HOST:PORT/DB?options
    postgres_pool_size: int = 4  # connections per process (each gunicorn worker has its own pool)
    postgres_connect_timeout_seconds: float = 5.0  # connect, and wait for a pooled connection; then 503
    postgres_statement_timeout_seconds: float = 30.0  # the server cancels a longer statement; then 503
    postgres_migrate_at_start: bool | None = None  # None: true for local/test/development, false for staging/production
    postgres_prune_seconds: float = 600.0  # history retention runs at most this often (0: never)
    postgres_iam_auth: bool = False  # log in with the service account's access token (storage/postgres_iam.py)
    dispatch: str = "inline"
    dispatch_lease_seconds: float | None = None  # None: SCHEDULER_LEASE_SECONDS; the heartbeat extends it while a run goes
    dispatch_concurrency: int = 16  # CreateTask calls at once (the dispatcher's pool)
    cloud_tasks_queue: str | None = None
    cloud_tasks_target_url: str | None = None
    cloud_tasks_service_account: str | None = None
    cloud_tasks_audience: str | None = None  # None: the target URL's scheme and host (tasks_audience)
    cloud_tasks_emulator_host: str | None = None
    tasks_allowed_emails: tuple[str, ...] = ()  # empty: the tasks service account (tasks_callers)
    console_auth: str = ""  # iap, disabled or off; empty: disabled when ENVIRONMENT=local, else off (web/console)
    iap_audience: str | None = None
    iap_certs_url: str = IAP_CERTS_URL
    console_admin_emails: tuple[str, ...] = ()
    console_viewer_emails: tuple[str, ...] = ()
    console_secret_key: str | None = field(default=None, repr=False)  # signs the console's CSRF tokens; required with iap
    console_refresh_seconds: int = 15  # auto-refresh of lists; 0: never

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, serving: bool = True) -> Settings:
        """``serving=False`` (the CLI, which never serves HTTP) skips the checks of the HTTP
        auth settings (AUTH_MODE, OIDC_*, CHAT_AUTH_AUDIENCE, TASKS_ALLOWED_EMAILS)."""
        reader = _Reader(environ)
        defaults = cls()
        values = {
            name: reader.get(env_name, getattr(defaults, name), cast, **options)
            for name, (env_name, cast, options) in _VARIABLES.items()
        }
        settings = cls(**values)
        settings._check(serving=serving)
        return settings

    def _check(self, *, serving: bool = True) -> None:
        if serving:
            self._check_http_auth()
            self._check_console()
        self._check_timing()
        self._check_dispatch(serving=serving)
        self._check_postgres()

    def _check_http_auth(self) -> None:
        if self.auth_mode == "disabled" and self.environment == "production":
            raise ConfigError("AUTH_MODE=disabled is refused when ENVIRONMENT=production; use oidc or iam")
        if self.auth_mode in ("oidc", "iam"):
            if not self.oidc_audience:
                raise ConfigError(f"OIDC_AUDIENCE is required with AUTH_MODE={self.auth_mode} (the service URL Cloud Scheduler uses)")
            if not self.oidc_allowed_emails:
                raise ConfigError(f"OIDC_ALLOWED_EMAILS is required with AUTH_MODE={self.auth_mode} (the invoker service account)")
        if self.auth_mode == "iam" and self.chat_auth_audience and self.chat_auth_audience.isdigit():
            # Chat signs project-number tokens itself; Cloud Run's IAM cannot verify them, so this
            # setup needs allUsers as invoker, and iam mode (which trusts Cloud Run to have checked
            # signatures) would then admit unsigned tokens on /cron/tick and /api/v1.
            raise ConfigError(
                f"AUTH_MODE=iam with CHAT_AUTH_AUDIENCE={self.chat_auth_audience!r} (a project number) is refused: "
                "Chat's project-number tokens cannot pass Cloud Run's IAM check, so the service would need allUsers "
                "as invoker, and with AUTH_MODE=iam crontick then checks no signature on /cron/tick and /api/v1 "
                "(an unsigned token naming an admin would be accepted). Use AUTH_MODE=oidc, or set CHAT_AUTH_AUDIENCE "
                "to the Chat app's HTTP endpoint URL (https://SERVICE/webhook) and keep the service private; see docs/chat.md"
            )

    def _check_timing(self) -> None:
        if self.tick_budget_seconds >= self.lease_seconds:
            raise ConfigError(
                f"SCHEDULER_TICK_BUDGET_SECONDS ({self.tick_budget_seconds:g}) must be below SCHEDULER_LEASE_SECONDS "
                f"({self.lease_seconds:g}), or leases could expire while their tick still runs"
            )
        if self.job_timeout_seconds >= self.tick_budget_seconds:
            # A job starts only if it can finish (time out at worst) within the tick budget.
            raise ConfigError(
                f"SCHEDULER_JOB_TIMEOUT_SECONDS ({self.job_timeout_seconds:g}) must be below "
                f"SCHEDULER_TICK_BUDGET_SECONDS ({self.tick_budget_seconds:g})"
            )
        try:
            zone(self.chat_default_timezone)
        except ValueError:
            raise ConfigError(f"CHAT_DEFAULT_TIMEZONE={self.chat_default_timezone!r}: unknown IANA time zone") from None
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ConfigError("SCHEDULER_RETRY_MAX_SECONDS must be at least SCHEDULER_RETRY_BASE_SECONDS")

    def _check_dispatch(self, *, serving: bool = True) -> None:
        """SCHEDULER_DISPATCH=cloud_tasks needs a queue, a target and (outside the emulator) a
        service account to sign the tasks' OIDC tokens; in inline mode the CLOUD_TASKS_* are unused."""
        if self.cloud_tasks_emulator_host and not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", self.cloud_tasks_emulator_host):
            raise ConfigError(f"CLOUD_TASKS_EMULATOR_HOST={self.cloud_tasks_emulator_host!r}: must be host:port, for example 127.0.0.1:9022")
        if self.dispatch != "cloud_tasks":
            return
        mode = "with SCHEDULER_DISPATCH=cloud_tasks"
        if not self.cloud_tasks_queue:
            raise ConfigError(f"CLOUD_TASKS_QUEUE is required {mode} (projects/PROJECT/locations/LOCATION/queues/QUEUE)")
        if not re.fullmatch(CLOUD_TASKS_QUEUE_RE, self.cloud_tasks_queue):
            raise ConfigError(
                f"CLOUD_TASKS_QUEUE={self.cloud_tasks_queue!r}: must be a full queue name, "
                "projects/PROJECT/locations/LOCATION/queues/QUEUE (the queue id: letters, digits and '-', at most 100)"
            )
        if not self.cloud_tasks_target_url:
            raise ConfigError(f"CLOUD_TASKS_TARGET_URL is required {mode} (the service URL followed by /tasks/run)")
        target = urlsplit(self.cloud_tasks_target_url)
        if target.scheme not in ("http", "https") or not target.netloc or target.query or target.fragment:
            raise ConfigError(f"CLOUD_TASKS_TARGET_URL={self.cloud_tasks_target_url!r}: must be an http(s) URL, the service URL followed by /tasks/run")
        if not target.path.endswith("/tasks/run"):
            # Every task would get 404 and be retried by Cloud Tasks until its max attempts.
            raise ConfigError(f"CLOUD_TASKS_TARGET_URL={self.cloud_tasks_target_url!r}: must end with /tasks/run, the endpoint that runs a task")
        if self.cloud_tasks_service_account is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.cloud_tasks_service_account):
            raise ConfigError(f"CLOUD_TASKS_SERVICE_ACCOUNT={self.cloud_tasks_service_account!r}: must be a service account email")
        if not self.cloud_tasks_service_account and not self.cloud_tasks_emulator_host:
            raise ConfigError(
                f"CLOUD_TASKS_SERVICE_ACCOUNT is required {mode} (the account whose OIDC token Cloud Tasks sends to "
                "/tasks/run); only CLOUD_TASKS_EMULATOR_HOST goes without one"
            )
        if serving and self.auth_mode != "disabled" and not self.tasks_callers:
            raise ConfigError(
                f"TASKS_ALLOWED_EMAILS (or CLOUD_TASKS_SERVICE_ACCOUNT, its default) is required {mode} and "
                f"AUTH_MODE={self.auth_mode}, or every task would be refused by /tasks/run"
            )

    def _check_postgres(self) -> None:
        """SCHEDULER_STORAGE=postgres needs SCHEDULER_POSTGRES_DSN, a libpq URL (the password is
        never echoed back in an error)."""
        if self.storage != "postgres":
            return
        if not self.postgres_dsn:
            raise ConfigError(
                "SCHEDULER_POSTGRES_DSN is required with SCHEDULER_STORAGE=postgres: a libpq URL such as "
                "postgresql://USER:PASSWORD@HOST:5432/DB, or postgresql://USER@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE on Cloud Run"
            )
        scheme = urlsplit(self.postgres_dsn).scheme if "://" in self.postgres_dsn else ""
        if scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"SCHEDULER_POSTGRES_DSN must be a libpq URL starting with postgresql:// (got {scheme + '://...' if scheme else 'no URL scheme'})"
            )
        if self.postgres_iam_auth:
            url = urlsplit(self.postgres_dsn)
            if url.password is not None or "password=" in url.query:
                raise ConfigError("SCHEDULER_POSTGRES_DSN must carry no password with SCHEDULER_POSTGRES_IAM_AUTH=true: the password is the service account's access token")
            if not url.username:
                raise ConfigError(
                    "SCHEDULER_POSTGRES_DSN must name the IAM database user with SCHEDULER_POSTGRES_IAM_AUTH=true: "
                    "postgresql://SA%40PROJECT.iam@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE"
                )

    def _check_console(self) -> None:
        """The operator console (web/console): CONSOLE_AUTH=disabled only on a developer's
        machine; iap needs the audience IAP signs for, someone to let in, and a shared
        secret for the CSRF tokens (every instance must accept the others' forms)."""
        if self.console_auth == "disabled" and self.environment != "local":
            raise ConfigError(f"CONSOLE_AUTH=disabled is allowed only with ENVIRONMENT=local (ENVIRONMENT={self.environment}); use CONSOLE_AUTH=iap, or off")
        for name, entries in (("CONSOLE_ADMIN_EMAILS", self.console_admin_emails), ("CONSOLE_VIEWER_EMAILS", self.console_viewer_emails)):
            for entry in entries:
                local, at, domain = entry.partition("@")
                if not at or not domain or "@" in domain or "." not in domain:
                    raise ConfigError(f"{name}: {entry!r} is neither an email nor an @domain entry")
        url = urlsplit(self.iap_certs_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"IAP_CERTS_URL={self.iap_certs_url!r}: must be an http(s) URL")
        if self.console_auth != "iap":
            return
        if not self.iap_audience:
            raise ConfigError(
                "IAP_AUDIENCE is required with CONSOLE_AUTH=iap: /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID "
                "(IAP behind a load balancer) or /projects/PROJECT_NUMBER/locations/REGION/services/SERVICE (IAP on Cloud Run)"
            )
        if not self.iap_audience.startswith("/projects/"):
            raise ConfigError(f"IAP_AUDIENCE={self.iap_audience!r}: must start with /projects/PROJECT_NUMBER/ (the 'aud' of IAP's signed header)")
        if not self.console_admin_emails and not self.console_viewer_emails:
            raise ConfigError("CONSOLE_ADMIN_EMAILS or CONSOLE_VIEWER_EMAILS is required with CONSOLE_AUTH=iap, or nobody can use the console")
        if not self.console_secret_key or len(self.console_secret_key) < MIN_CONSOLE_SECRET_CHARS:
            raise ConfigError(
                f"CONSOLE_SECRET_KEY of at least {MIN_CONSOLE_SECRET_CHARS} characters is required with CONSOLE_AUTH=iap "
                "(the same on every instance; e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )

    @property
    def tasks_audience(self) -> str | None:
        """The audience of the tasks' OIDC tokens: CLOUD_TASKS_AUDIENCE, else the target URL's scheme and host."""
        if self.cloud_tasks_audience:
            return self.cloud_tasks_audience
        if not self.cloud_tasks_target_url:
            return None
        target = urlsplit(self.cloud_tasks_target_url)
        return f"{target.scheme}://{target.netloc}"

    @property
    def tasks_callers(self) -> tuple[str, ...]:
        """Who may call POST /tasks/run: TASKS_ALLOWED_EMAILS, else the tasks service account."""
        if self.tasks_allowed_emails:
            return self.tasks_allowed_emails
        return (self.cloud_tasks_service_account,) if self.cloud_tasks_service_account else ()

    def replace(self, **changes: Any) -> Settings:
        new = dataclasses.replace(self, **changes)
        new._check()
        return new


_VARIABLES: dict[str, tuple[str, Callable[[str], Any], dict[str, Any]]] = {
    "environment": ("ENVIRONMENT", str.lower, {"choices": ENVIRONMENTS}),
    "auth_mode": ("AUTH_MODE", str.lower, {"choices": AUTH_MODES}),
    "oidc_audience": ("OIDC_AUDIENCE", str, {}),
    "oidc_allowed_emails": ("OIDC_ALLOWED_EMAILS", _csv, {}),
    "oidc_certs_url": ("OIDC_CERTS_URL", str, {}),
    "oidc_certs_timeout_seconds": ("OIDC_CERTS_TIMEOUT_SECONDS", float, {"minimum": 0.1}),
    "admin_emails": ("ADMIN_EMAILS", _csv, {}),
    "google_cloud_project": ("GOOGLE_CLOUD_PROJECT", str, {}),
    "storage": ("SCHEDULER_STORAGE", str.lower, {"choices": STORAGES}),
    "json_path": ("SCHEDULER_JSON_PATH", str, {}),
    "json_lock_timeout_seconds": ("SCHEDULER_JSON_LOCK_TIMEOUT_SECONDS", float, {"minimum": 0.01}),
    "max_concurrency": ("SCHEDULER_MAX_CONCURRENCY", int, {"minimum": 1}),
    "max_abandoned_runs": ("SCHEDULER_MAX_ABANDONED_RUNS", int, {"minimum": 1}),
    "lease_seconds": ("SCHEDULER_LEASE_SECONDS", float, {"minimum": 1}),
    "tick_budget_seconds": ("SCHEDULER_TICK_BUDGET_SECONDS", float, {"minimum": 0.1}),
    "job_timeout_seconds": ("SCHEDULER_JOB_TIMEOUT_SECONDS", float, {"minimum": 0.01}),
    "retry_base_seconds": ("SCHEDULER_RETRY_BASE_SECONDS", float, {"minimum": 0}),
    "retry_max_seconds": ("SCHEDULER_RETRY_MAX_SECONDS", float, {"minimum": 0}),
    "claim_batch_size": ("SCHEDULER_CLAIM_BATCH_SIZE", int, {"minimum": 1}),
    "history_limit": ("SCHEDULER_HISTORY_LIMIT", int, {"minimum": 1}),
    "history_days": ("SCHEDULER_HISTORY_DAYS", int, {"minimum": 1}),
    "retention_days": ("SCHEDULER_RETENTION_DAYS", int, {"minimum": 0}),
    "handler_modules": ("SCHEDULER_HANDLER_MODULES", _csv, {}),
    "local_tick_seconds": ("SCHEDULER_LOCAL_TICK_SECONDS", float, {"minimum": 1}),
    "log_level": ("LOG_LEVEL", str.upper, {"choices": ("DEBUG", "INFO", "WARNING", "ERROR")}),
    "log_format": ("LOG_FORMAT", str.lower, {"choices": LOG_FORMATS}),
    "metrics_enabled": ("METRICS_ENABLED", parse_bool, {}),
    "metrics_store_cache_seconds": ("METRICS_STORE_CACHE_SECONDS", float, {"minimum": 0}),
    "host": ("HOST", _host, {}),
    "shadow_mode": ("SCHEDULER_SHADOW_MODE", parse_bool, {}),
    "legacy_interval_seconds": ("SCHEDULER_LEGACY_INTERVAL_SECONDS", float, {"minimum": 1}),
    "chat_auth_audience": ("CHAT_AUTH_AUDIENCE", str, {}),
    "chat_allowed_senders": ("CHAT_ALLOWED_SENDERS", _csv, {}),
    "chat_default_timezone": ("CHAT_DEFAULT_TIMEZONE", str, {}),
    "chat_api_base_url": ("CHAT_API_BASE_URL", str, {}),
    "chat_certs_url": ("CHAT_CERTS_URL", str, {}),
    "firestore_database": ("FIRESTORE_DATABASE", str, {}),
    "firestore_jobs_collection": ("FIRESTORE_JOBS_COLLECTION", str, {}),
    "firestore_executions_collection": ("FIRESTORE_EXECUTIONS_COLLECTION", str, {}),
    "firestore_ticks_collection": ("FIRESTORE_TICKS_COLLECTION", str, {}),
    "postgres_dsn": ("SCHEDULER_POSTGRES_DSN", str, {}),
    "postgres_pool_size": ("SCHEDULER_POSTGRES_POOL_SIZE", int, {"minimum": 1}),
    "postgres_connect_timeout_seconds": ("SCHEDULER_POSTGRES_CONNECT_TIMEOUT_SECONDS", float, {"minimum": 0.1}),
    "postgres_statement_timeout_seconds": ("SCHEDULER_POSTGRES_STATEMENT_TIMEOUT_SECONDS", float, {"minimum": 0.1}),
    "postgres_migrate_at_start": ("SCHEDULER_POSTGRES_MIGRATE_AT_START", parse_bool, {}),
    "postgres_prune_seconds": ("SCHEDULER_POSTGRES_PRUNE_SECONDS", float, {"minimum": 0}),
    "postgres_iam_auth": ("SCHEDULER_POSTGRES_IAM_AUTH", parse_bool, {}),
    "dispatch": ("SCHEDULER_DISPATCH", str.lower, {"choices": DISPATCH_MODES}),
    "dispatch_lease_seconds": ("SCHEDULER_DISPATCH_LEASE_SECONDS", float, {"minimum": 1}),
    "dispatch_concurrency": ("SCHEDULER_DISPATCH_CONCURRENCY", int, {"minimum": 1}),
    "cloud_tasks_queue": ("CLOUD_TASKS_QUEUE", str, {}),
    "cloud_tasks_target_url": ("CLOUD_TASKS_TARGET_URL", str, {}),
    "cloud_tasks_service_account": ("CLOUD_TASKS_SERVICE_ACCOUNT", str, {}),
    "cloud_tasks_audience": ("CLOUD_TASKS_AUDIENCE", str, {}),
    "cloud_tasks_emulator_host": ("CLOUD_TASKS_EMULATOR_HOST", str, {}),
    "tasks_allowed_emails": ("TASKS_ALLOWED_EMAILS", _csv, {}),
    "console_auth": ("CONSOLE_AUTH", str.lower, {"choices": CONSOLE_AUTH_MODES}),
    "iap_audience": ("IAP_AUDIENCE", str, {}),
    "iap_certs_url": ("IAP_CERTS_URL", str, {}),
    "console_admin_emails": ("CONSOLE_ADMIN_EMAILS", _csv, {}),
    "console_viewer_emails": ("CONSOLE_VIEWER_EMAILS", _csv, {}),
    "console_secret_key": ("CONSOLE_SECRET_KEY", str, {}),
    "console_refresh_seconds": ("CONSOLE_REFRESH_SECONDS", int, {"minimum": 0}),
}
