"""Settings of the benchmarks: ``DATABASE_URL`` picks the database (see run.py for defaults)."""

import os

import environ

env = environ.Env()
SECRET_KEY = "benchmarks"
USE_TZ = True
DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:////tmp/django-jobs-bench.sqlite3")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"
    }
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django_jobs",
                  "benchmarks.bench_app"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJANGO_JOBS = (
    {"POLL_INTERVAL": float(os.environ["BENCH_POLL"])} if "BENCH_POLL" in os.environ else {}
)
