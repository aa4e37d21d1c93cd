from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .querysets import JobTypeLockManager


class JobTypeLock(models.Model):
    """A held lock key. The primary key makes a second holder an ``IntegrityError``."""

    key = models.CharField(_("key"), max_length=255, primary_key=True)
    job = models.ForeignKey(
        "django_jobs.Job",
        verbose_name=_("holder job"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    claim_id = models.UUIDField(null=True, blank=True, editable=False)
    worker = models.CharField(_("worker"), max_length=255, blank=True, default="")
    # The process holding the key: the key is held while that process lives (or, for a key
    # taken without one, until ``locked_until``).
    owner = models.ForeignKey(
        "django_jobs.Worker",
        verbose_name=_("worker process"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
    )
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = JobTypeLockManager()

    class Meta:
        verbose_name = _("job type lock")
        verbose_name_plural = _("job type locks")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
