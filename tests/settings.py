"""Settings of the test suite. The database comes from ``DATABASE_URL`` (default: SQLite file).

Worker subprocesses started by the tests import these settings too; they find the test
database through ``DJANGO_JOBS_TEST_DB`` (set by the ``worker_env`` fixture).
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
# The suite's cron example stays off, so worker processes started by tests do not add its rows;
# scheduling tests switch it on explicitly.
os.environ.setdefault("JOBS_BILLING_INVOICE_SYNC_ENABLED", "false")
# The every-second job of tests/concurrency/test_scheduler_processes.py: on only in its workers.
os.environ.setdefault("JOBS_JOBSAPP_SCHEDULING_TICK_ENABLED", "false")
env = environ.Env()

SECRET_KEY = "django-jobs-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

default_db = env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'test.sqlite3'}")
# One test database per test run (suffix: the pid of the test process), so that several runs
# on one machine never drop each other's database.
RUN_ID = os.environ.get("DJANGO_JOBS_TEST_RUN", str(os.getpid()))
os.environ["DJANGO_JOBS_TEST_RUN"] = RUN_ID
if default_db["ENGINE"].endswith("sqlite3"):
    # A file, never :memory:, so that worker processes share it with the tests.
    default_db["TEST"] = {"NAME": f"/tmp/django-jobs-test-{RUN_ID}.sqlite3"}
    default_db.setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
elif default_db["ENGINE"].endswith("mysql"):
    default_db.setdefault("OPTIONS", {}).update({"charset": "utf8mb4"})
    default_db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
if not default_db["ENGINE"].endswith("sqlite3"):
    default_db.setdefault("TEST", {})["NAME"] = f"test_{default_db['NAME']}_{RUN_ID}"
if os.environ.get("DJANGO_JOBS_TEST_DB"):
    default_db["NAME"] = os.environ["DJANGO_JOBS_TEST_DB"]
DATABASES = {"default": default_db}
# A second alias on the same test database (a test mirror of "default"), so that tests can
# prove DJANGO_JOBS["DATABASE"] sends every query of the job tables to the alias it names.
DATABASES["jobs"] = {**{k: v for k, v in default_db.items() if k != "TEST"},
                     "OPTIONS": dict(default_db.get("OPTIONS", {})), "TEST": {"MIRROR": "default"}}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Serves the admin's CSS and JS to the browser tests' live server.
    "django.contrib.staticfiles",
    "django_jobs",
    "tests.jobsapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

# Short intervals so that recovery can be observed in seconds.
DJANGO_JOBS = {
    "HEARTBEAT_INTERVAL": 0.5,
    "CANCEL_CHECK_INTERVAL": 0.2,
    "PROGRESS_THROTTLE": 0.2,
    "POLL_INTERVAL": 0.2,
    "RESCUE_INTERVAL": 0.5,
    # A test may give its worker processes more (DJANGO_JOBS_TEST_WORKER_LOST_AFTER).
    "WORKER_LOST_AFTER": float(os.environ.get("DJANGO_JOBS_TEST_WORKER_LOST_AFTER", 3.0)),
    "HUNG_AFTER": 3.0,
    "GRACE": 5.0,
}
# Worker processes of tests/concurrency/test_pgbouncer.py reach the database through PgBouncer
# (their DATABASE_URL). DJANGO_JOBS_TEST_LISTEN_URL gives them a direct connection to LISTEN on;
# DJANGO_JOBS_TEST_DEFAULT_POLL leaves POLL_INTERVAL at its default, so that polling while
# listening is the long safety net it is in production.
if os.environ.get("DJANGO_JOBS_TEST_LISTEN_URL"):
    DATABASES["direct"] = {**env.db("DJANGO_JOBS_TEST_LISTEN_URL"), "NAME": default_db["NAME"]}
    DJANGO_JOBS["LISTEN_DATABASE"] = "direct"
if os.environ.get("DJANGO_JOBS_TEST_DEFAULT_POLL"):
    del DJANGO_JOBS["POLL_INTERVAL"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_jobs": {"handlers": ["stderr"], "level": env("JOBS_LOG_LEVEL", default="WARNING")}
    },
}

# Django's Tasks framework (Django >= 6.0): tasks of tests/tasksapp run through django-jobs.
import django  # noqa: E402

if django.VERSION >= (6, 0):
    INSTALLED_APPS.append("tests.tasksapp")
    TASKS = {
        "default": {
            "BACKEND": "django_jobs.backends.JobsBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {
                "MODULES": [
                    "tests.tasksapp.docs_examples",
                    "tests.tasksapp.docs_context_example",
                ],
                "JOB_OPTIONS": {
                    "tests.tasksapp.tasks.flaky": {"max_attempts": 3, "retry_delay": 0.2},
                },
            },
        },
    }
    # The documented examples send mail; worker processes keep it in memory.
    if django.VERSION >= (6, 1):
        MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    else:
        EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
