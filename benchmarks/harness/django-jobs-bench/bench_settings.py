"""Django settings of the harness adapter: the smallest project that runs django-jobs.

Everything comes from the environment the harness sets: ``DATABASE_URL`` names the per-system
database (``postgres://user:pass@host:port/django_jobs_bench``). Connections are persistent
(``CONN_MAX_AGE = None``): a worker keeps its connections between jobs anyway, and the
producer and depth threads of the adapter reuse theirs.
"""

import os

import environ

env = environ.Env()

SECRET_KEY = "django-jobs-harness-adapter"
DEBUG = False  # DEBUG=True would keep every query in memory for hours
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS: list[str] = []

_db = env.db_url("DATABASE_URL")
_db["CONN_MAX_AGE"] = None
# Names the adapter's connections in pg_stat_activity (per replica), so the harness's
# wait-event and activity samples can be attributed.
_db.setdefault("OPTIONS", {})["application_name"] = (
    f"django-jobs-bench-{os.environ.get('BENCH_INSTANCE_ID', '0')}"
)
DATABASES = {"default": _db}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",  # Job.created_by points at the user model
    "django_jobs",
    "bench_app",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-jobs runs with its defaults (heartbeat 5 s, WORKER_LOST_AFTER 30 s, RESCUE_INTERVAL
# 5 s, LISTEN/NOTIFY on). Nothing is tuned for the benchmark.
DJANGO_JOBS: dict = {}
