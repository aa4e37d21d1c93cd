"""The version of django-jobs (also stored on each worker's row)."""

__version__ = "0.1.0"
