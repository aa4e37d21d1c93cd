from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class JobsConfig(AppConfig):
    name = "django_jobs"
    label = "django_jobs"
    verbose_name = _("Jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.utils.module_loading import autodiscover_modules

        from . import checks as jobs_checks
        from .compat import autodiscover_tasks
        from .jobtypes import registry

        checks.register(jobs_checks.check_settings, "django_jobs")
        checks.register(jobs_checks.check_job_types, "django_jobs")
        checks.register(jobs_checks.check_database, "django_jobs")
        checks.register(jobs_checks.check_database_features, "django_jobs", checks.Tags.database)
        autodiscover_modules("jobs", register_to=registry)
        # Django >= 6.0 with TASKS using JobsBackend: defining a @task registers it.
        autodiscover_tasks()
