"""Walter settings.

Every setting comes from the environment (django-environ) with a safe local default, so a fresh clone runs with
no `.env` at all: SQLite under `var/`, demo market data, the rule-based analyst, emails written to `var/outbox/`,
the archive in `var/archive/` and the shared tables in the local database.
"""

import math
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# SQLite, the outbox, the archive and locks live here by default; walter_site.apps creates it at start-up.
VAR_DIR = Path(env.str("WALTER_VAR_DIR", default=str(BASE_DIR / "var")))
# One region for every AWS client (SES, DynamoDB, S3, SNS, Secrets Manager); AWS_DEFAULT_REGION as boto3 reads it.
AWS_REGION = env.str("AWS_REGION", default="") or env.str("AWS_DEFAULT_REGION", default="us-east-1")

# Production secrets (SECRET_KEY, API keys, ...) may live in one AWS Secrets Manager secret, a JSON object merged
# into the environment before anything below reads it; variables already set in the environment win.
if env.str("AWS_SECRETS_MANAGER_SECRET_ID", default=""):
    from walter_site.secrets import secrets_into_environ

    secrets_into_environ(
        env.str("AWS_SECRETS_MANAGER_SECRET_ID"),
        region=AWS_REGION,
    )

# WALTER_ENV=production is the one switch for a deployed site: it refuses to start without the settings that have
# no safe default, and turns on the HTTPS-only settings at the end of this file. Anything else (the default,
# "local") keeps the zero-configuration local defaults.
WALTER_ENV = env.str("WALTER_ENV", default="local")
PRODUCTION = WALTER_ENV == "production"
if PRODUCTION:
    _missing = [name for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL") if not env.str(name, default="")]
    if _missing:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"WALTER_ENV=production needs {', '.join(_missing)} in the environment or in the Secrets Manager secret"
        )

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="walter-local-development-key-not-for-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Absolute base of links in emails (confirm, preferences, unsubscribe, view in browser).
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "anymail",
    "walter_site",
    "markets",
    "subscriptions",
    "newsletters",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "walter_site.urls"
WSGI_APPLICATION = "walter_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'walter.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
# Seconds a web thread keeps its database connection between requests; 0 opens one per request, which was a fifth
# of a ticker search's time on SQLite and is a TCP and authentication round trip per request on PostgreSQL. A
# connection that broke in between is replaced before it is used. `?conn_max_age=` in DATABASE_URL wins.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the preview pages read while run_daily writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL;")
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://walter")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The market's own time zone: "today" and "the latest completed session" are decided here.
MARKET_TIME_ZONE = env.str("MARKET_TIME_ZONE", default="America/New_York")

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION

ARCHIVE_STORAGE_BACKEND = env.str("ARCHIVE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")
ARCHIVE_BUCKET = env.str("ARCHIVE_BUCKET", default="")
if ARCHIVE_STORAGE_BACKEND == "storages.backends.s3.S3Storage":
    _archive_options = {
        "bucket_name": ARCHIVE_BUCKET,
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": True,
        "object_parameters": {"ServerSideEncryption": "AES256"},
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
    }
else:
    _archive_options = {
        "location": str(env.path("ARCHIVE_DIR", default=str(VAR_DIR / "archive"))),
        "allow_overwrite": True,
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names need `collectstatic` (the image runs it); a local checkout serves the files as they
    # are, found in place, so the admin and the pages work straight after the demo command.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "archive": {"BACKEND": ARCHIVE_STORAGE_BACKEND, "OPTIONS": _archive_options},
}

# Email: files under var/outbox by default; Amazon SES through django-anymail in production.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="newsletters.email_backends.EmlFileBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "outbox"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Walter <walter@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Walter operators", a) for a in env.list("ADMINS", default=[])]
NEWSLETTER_POSTAL_ADDRESS = env.str("NEWSLETTER_POSTAL_ADDRESS", default="Walter, 1 Example Street, Springfield, USA")
NEWSLETTER_UNSUBSCRIBE_MAILTO = env.str("NEWSLETTER_UNSUBSCRIBE_MAILTO", default="")
# Seconds an email sent while a visitor waits (confirmation, manage link, data link) may take, in one attempt.
WEB_EMAIL_TIMEOUT = env.float("WEB_EMAIL_TIMEOUT", default=2.0)
# Amazon SES v2 through django-anymail: EMAIL_BACKEND=anymail.backends.amazon_ses.EmailBackend. botocore's
# standard retry mode retries throttling and 5xx answers with backoff before Walter sees an error.
ANYMAIL = {
    "AMAZON_SES_CLIENT_PARAMS": {
        "region_name": AWS_REGION,
        "endpoint_url": env.str("SES_ENDPOINT_URL", default="") or None,
        "config": {
            "retries": {"mode": "standard", "max_attempts": env.int("SES_MAX_ATTEMPTS", default=3)},
            "connect_timeout": 5,
            "read_timeout": 20,
            "max_pool_connections": 32,
        },
    },
    "AMAZON_SES_CONFIGURATION_SET_NAME": env.str("SES_CONFIGURATION_SET", default="") or None,
}
# The account's sending rate (messages per second, shared by every process through the cache; 0: unpaced),
# the connections sending in parallel, and how often a throttled message is tried again.
SES_MAX_SEND_RATE = env.float("SES_MAX_SEND_RATE", default=14.0)
# An SES call takes about 50-200 ms: one connection per 5 messages a second keeps a full queue at the full rate.
SES_SEND_CONCURRENCY = env.int("SES_SEND_CONCURRENCY", default=min(64, max(4, math.ceil(SES_MAX_SEND_RATE / 5))))
SES_THROTTLE_RETRIES = env.int("SES_THROTTLE_RETRIES", default=5)

# Pluggable outside systems, chosen by dotted path the way EMAIL_BACKEND is.
POLYGON_API_KEY = env.str("POLYGON_API_KEY", default="")
MARKET_DATA_PROVIDER = env.str(
    "MARKET_DATA_PROVIDER",
    default="markets.providers.polygon.PolygonProvider" if POLYGON_API_KEY else "markets.providers.demo.DemoProvider",
)
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_MODEL = env.str("LLM_MODEL", default="")
# The analyst over the openai client: its prompt file (newsletters/prompts/analysis-<version>.txt), timeouts,
# retries (its own: the client's are off), sampling, concurrency and a request budget shared through the cache.
LLM_PROMPT_VERSION = env.str("LLM_PROMPT_VERSION", default="v2")
LLM_RESPONSE_FORMAT = env.str("LLM_RESPONSE_FORMAT", default="auto")  # auto, json_schema, json_object or plain
# 0: no per-request cap; a request may take what is left of ANALYSIS_TIME_BUDGET (a cap counts queue time too).
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=0.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=0.2)
# 0: derived from the reply's JSON schema (newsletters.analysts.replies.reply_token_budget, about 660).
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=0)
LLM_PARALLELISM = env.int("LLM_PARALLELISM", default=4)  # the most; 429, 5xx and timeouts lower it for a while
# Seconds the analysis stage may take; tickers not analysed by then get the rule-based analysis.
ANALYSIS_TIME_BUDGET = env.float("ANALYSIS_TIME_BUDGET", default=1200.0)
LLM_REQUESTS_PER_MINUTE = env.float("LLM_REQUESTS_PER_MINUTE", default=60.0)
LLM_RETRY_AFTER_DEFAULT = env.float("LLM_RETRY_AFTER_DEFAULT", default=5.0)
LLM_RETRY_AFTER_MAX = env.float("LLM_RETRY_AFTER_MAX", default=120.0)
NEWSLETTER_ANALYST = env.str(
    "NEWSLETTER_ANALYST",
    default="newsletters.analysts.llm.LLMAnalyst"
    if (LLM_API_KEY or LLM_BASE_URL) and LLM_MODEL
    else "newsletters.analysts.rule_based.RuleBasedAnalyst",
)
SHARED_TABLES_BACKEND = env.str("SHARED_TABLES_BACKEND", default="markets.shared_tables.database.DatabaseSharedTables")
SHARED_TABLES_STAGE = env.str("SHARED_TABLES_STAGE", default="dev")
DYNAMODB_ENDPOINT_URL = env.str("DYNAMODB_ENDPOINT_URL", default="")

# Polygon.io through its official client `massive`; the base URL is a setting so tests point it at a local server.
POLYGON_BASE_URL = env.str("POLYGON_BASE_URL", default="https://api.polygon.io").rstrip("/")
# Shared by every process through the cache; the free plan allows 5 requests per minute.
POLYGON_REQUESTS_PER_MINUTE = env.float("POLYGON_REQUESTS_PER_MINUTE", default=5.0)
POLYGON_CONNECT_TIMEOUT = env.float("POLYGON_CONNECT_TIMEOUT", default=5.0)
POLYGON_READ_TIMEOUT = env.float("POLYGON_READ_TIMEOUT", default=30.0)
# Attempts per request after the first, for timeouts, 429 and 5xx answers.
POLYGON_RETRIES = env.int("POLYGON_RETRIES", default=3)
# A 429 without Retry-After waits this long; a longer Retry-After than the cap fails the request instead.
POLYGON_RETRY_AFTER_DEFAULT = env.float("POLYGON_RETRY_AFTER_DEFAULT", default=12.0)
POLYGON_RETRY_AFTER_MAX = env.float("POLYGON_RETRY_AFTER_MAX", default=120.0)
# The longest a request waits for a slot of the shared budget before it fails (seconds): the daily job may queue
# behind other processes for a while, never forever. Web requests make no Polygon calls (they read the directory).
POLYGON_MAX_WAIT = env.float("POLYGON_MAX_WAIT", default=300.0)
# Data quality: a daily |log return| beyond this many standard deviations of the ticker's recent returns, with
# no split, is flagged for staff and shown with a caution.
OUTLIER_SIGMA = env.float("OUTLIER_SIGMA", default=6.0)
OUTLIER_LOOKBACK = env.int("OUTLIER_LOOKBACK", default=60)
# DynamoDB shared tables: botocore's standard retry mode with this many attempts; batch writes retry
# unprocessed items this many times with exponential backoff.
DYNAMODB_MAX_ATTEMPTS = env.int("DYNAMODB_MAX_ATTEMPTS", default=5)
DYNAMODB_UNPROCESSED_RETRIES = env.int("DYNAMODB_UNPROCESSED_RETRIES", default=8)

# The daily job.
DELIVERY_BATCH_SIZE = env.int("DELIVERY_BATCH_SIZE", default=300)
# After a SIGTERM, seconds to wait for the messages already with the email backend before exiting (ECS sends
# SIGKILL 30 s after SIGTERM); what is still out then stays "sending", listed as ambiguous.
DELIVERY_STOP_GRACE = env.float("DELIVERY_STOP_GRACE", default=10.0)
# --- Celery: delivery batches and on-demand sends on any number of workers (`celery -A walter_site worker`).
# Empty broker: everything runs in the process that asks for it, as on one machine. redis://host:6379/1 locally;
# sqs:// in production with the queue URL below (kombu's SQS transport; credentials from the task role), or
# sqs://127.0.0.1:PORT for a local SQS (moto_server) over plain HTTP.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="walter")
# Seconds a received message stays hidden from other workers; longer than the longest task (see the time limit).
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
# A task still running this long is stopped, well before its message is handed to another worker.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=max(1, CELERY_VISIBILITY_TIMEOUT * 3 // 4))
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
# Acknowledged after the task, never before: a worker that dies leaves its message to another one.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A failing task is not acknowledged: SQS receives it again and moves it to the dead-letter queue after 5 receives.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis hands a dead worker's message out again once it is older than the visibility timeout, on a sweep that
    # every worker makes; a cheap ZRANGE, so sweep every few seconds rather than kombu's ~100 s.
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {"unacked_restore_interval": min(10, max(1, CELERY_VISIBILITY_TIMEOUT // 6)), "unacked_restore_throttle": 1}
    )
CELERY_SQS_QUEUE_URL = env.str("CELERY_SQS_QUEUE_URL", default="")
CELERY_SQS_DEAD_LETTER_QUEUE_URL = env.str("CELERY_SQS_DEAD_LETTER_QUEUE_URL", default="")
if CELERY_BROKER_URL.startswith("sqs://"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "region": AWS_REGION,
            # Queues are made by infra/walter.yml with their dead-letter redrive; workers never create one.
            "predefined_queues": {CELERY_TASK_DEFAULT_QUEUE: {"url": CELERY_SQS_QUEUE_URL}},
            "wait_time_seconds": env.int("SQS_WAIT_TIME_SECONDS", default=10),
        }
    )
# run_daily with a broker waits for its batches; with no delivery progress for this long it stops waiting and
# says how many are left (the workers still finish them).
DELIVERY_WAIT_STALL_SECONDS = env.int("DELIVERY_WAIT_STALL_SECONDS", default=CELERY_VISIBILITY_TIMEOUT)
# "Send me the latest issue now": requests per subscriber per day.
SEND_NOW_LIMIT_PER_DAY = env.int("SEND_NOW_LIMIT_PER_DAY", default=3)

# The session's news may add at most this many seconds to the data stage at the provider's request pace, after the
# prices; more and it is skipped with a note. At the free plan's 5 requests a minute one request takes 12 s: skipped.
MARKET_NEWS_MAX_SECONDS = env.float("MARKET_NEWS_MAX_SECONDS", default=10.0)
# Days of history a newly followed ticker gets, enough for SMA50, the 180-day drawdown and the 52-week range.
MARKET_BACKFILL_DAYS = env.int("MARKET_BACKFILL_DAYS", default=400)
# More than this share of followed tickers without data for the session and nobody gets an issue: the run fails
# (non-zero exit, retried later) instead of sending "data unavailable" for most of them.
DATA_MAX_FAILED_SHARE = env.float("DATA_MAX_FAILED_SHARE", default=0.2)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

LOGIN_URL = "admin:login"

# Estimated cost of model calls, in US dollars per million tokens.
LLM_PRICE_INPUT_PER_MILLION = env.float("LLM_PRICE_INPUT_PER_MILLION", default=0.0)
LLM_PRICE_OUTPUT_PER_MILLION = env.float("LLM_PRICE_OUTPUT_PER_MILLION", default=0.0)

# --- production, security and observability ---
# WALTER_ENV=production turns on HTTPS-only cookies, HSTS and the SSL redirect below.
# WALTER_ENV and PRODUCTION are set at the top of this file, before anything reads the environment.
# The database password may come separately (an ECS secret from the database's own generated secret).
if env.str("DATABASE_PASSWORD", default=""):
    DATABASES["default"]["PASSWORD"] = env.str("DATABASE_PASSWORD")

# TLS ends at the load balancer, which says so in X-Forwarded-Proto.
if env.bool("BEHIND_PROXY", default=PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancer and container health checks speak plain HTTP to the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SESSION_COOKIE_SAMESITE = "Lax"

# The admin lives at a path of the operator's choosing ("ops-7f3a/"), not where every scanner looks first.
ADMIN_URL = (env.str("ADMIN_URL", default="admin/").strip("/") or "admin") + "/"

# Content Security Policy (django-csp 4 format). Scripts only from this site; inline styles are allowed because
# email previews are emails, whose CSS is inlined by design; charts may come from the archive bucket over https.
INSTALLED_APPS += ["csp", "axes"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": env.list("CSP_IMG_SRC", default=["'self'", "data:", "https:"]),
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
_after_security = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
MIDDLEWARE[_after_security:_after_security] = [
    "csp.middleware.CSPMiddleware",
    # Answers /healthz and /readyz before the Host header is checked: load balancers probe by IP address.
    "walter_site.health.HealthCheckMiddleware",
]
MIDDLEWARE += [
    "walter_site.security.StaffNoStoreMiddleware",
    # Last, as django-axes requires: turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

# Admin logins: AXES_FAILURE_LIMIT failures from one address lock it out for AXES_COOLOFF_HOURS.
AUTHENTICATION_BACKENDS = [
    "walter_site.security.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "walter_site.security.client_ip"
AXES_USERNAME_CALLABLE = "walter_site.security.login_username"
# How many proxies in front of the site append to X-Forwarded-For (the load balancer: 1). 0 trusts REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1 if PRODUCTION else 0)

# Logging: human-readable lines by default, one JSON object per line with LOG_FORMAT=json; every line logged
# during a daily run carries its run id.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "walter_site.logging.LogContextFilter"},
        "redact": {"()": "walter_site.logging.RedactFilter"},
    },
    "formatters": {
        "plain": {
            "()": "walter_site.logging.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
            "json_ensure_ascii": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "walter": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# Metrics: METRICS=emf prints one CloudWatch Embedded Metric Format line per daily run on stdout, which
# CloudWatch Logs turns into metrics (namespace METRICS_NAMESPACE, dimension Stage).
METRICS = env.str("METRICS", default="")
METRICS_NAMESPACE = env.str("METRICS_NAMESPACE", default="Walter")
STAGE = env.str("STAGE", default=SHARED_TABLES_STAGE)
# Alerts: a failed or partial run emails ADMINS and, with this set, publishes to the SNS topic.
ALERT_SNS_TOPIC_ARN = env.str("ALERT_SNS_TOPIC_ARN", default="")

# --- subscribers ---
# Subscribe attempts per hour, per client address and per email address (counted in the shared cache).
SUBSCRIBE_LIMIT_PER_IP = env.int("SUBSCRIBE_LIMIT_PER_IP", default=20)
SUBSCRIBE_LIMIT_PER_EMAIL = env.int("SUBSCRIBE_LIMIT_PER_EMAIL", default=5)
TICKER_SEARCH_LIMIT_PER_MINUTE = env.int("TICKER_SEARCH_LIMIT_PER_MINUTE", default=120)
# SES bounce and complaint events through SNS: only these topics are accepted; older messages are refused.
SES_EVENTS_TOPIC_ARNS = env.list("SES_EVENTS_TOPIC_ARNS", default=[])
SNS_MAX_AGE_SECONDS = env.int("SNS_MAX_AGE_SECONDS", default=3600)
# Signing certificates fetched from AWS per minute, all processes together: more means someone names made-up ones.
SNS_CERTIFICATE_FETCHES_PER_MINUTE = env.int("SNS_CERTIFICATE_FETCHES_PER_MINUTE", default=10)
# Soft bounces in a row after which an address is suppressed as bounced.
SOFT_BOUNCE_LIMIT = env.int("SOFT_BOUNCE_LIMIT", default=3)
# Links that download or delete a subscriber's data: sent on request, valid this many seconds, at most
# DATA_LINK_LIMIT_PER_HOUR emails of them per subscriber per hour.
DATA_LINK_MAX_AGE = env.int("DATA_LINK_MAX_AGE", default=3600)
DATA_LINK_LIMIT_PER_HOUR = env.int("DATA_LINK_LIMIT_PER_HOUR", default=5)
