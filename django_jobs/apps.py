from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class JobsConfig(AppConfig):
    name = "django_jobs"
    label = "django_jobs"
    verbose_name = _("Jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the models exist: this module loads while Django populates its
        # apps. Loading the runner and the in-process runner also installs them where
        # fn.run() and eager mode find them.
        from django.core import checks
        from django.utils.module_loading import autodiscover_modules

        from . import checks as jobs_checks
        from . import runner  # noqa: F401  (installs fn.run())
        from .compat import autodiscover_tasks
        from .jobtypes import registry
        from .worker import inprocess  # noqa: F401  (installs eager mode's runner)

        checks.register(jobs_checks.check_settings, "django_jobs")
        checks.register(jobs_checks.check_job_types, "django_jobs")
        checks.register(jobs_checks.check_database, "django_jobs")
        checks.register(jobs_checks.check_database_features, "django_jobs", checks.Tags.database)
        autodiscover_modules("jobs", register_to=registry)
        # Django >= 6.0 with TASKS using JobsBackend: defining a @task registers it.
        autodiscover_tasks()
