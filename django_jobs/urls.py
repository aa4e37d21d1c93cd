"""URLs of django-jobs for a project's URLconf:
``path("metrics/", include("django_jobs.urls"))`` serves the Prometheus metrics.

Importing this module needs the ``metrics`` extra (``prometheus_client``).
"""

from django.urls import path

from .metrics import metrics_view

app_name = "django_jobs"
urlpatterns = [path("", metrics_view, name="metrics")]
