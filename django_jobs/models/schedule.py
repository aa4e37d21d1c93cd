from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .querysets import LockManager


class JobSchedule(models.Model):
    """Scheduler state of one recurring job, shared by every worker.

    ``last_occurrence`` only moves forward; a scheduler never creates an occurrence at or before
    it, so pruning old ``Job`` rows can never bring an occurrence back.
    """

    name = models.CharField(_("name"), max_length=200, primary_key=True)
    last_occurrence = models.DateTimeField(_("last scheduled occurrence"), null=True, blank=True)
    paused = models.BooleanField(_("paused"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = LockManager()

    class Meta:
        verbose_name = _("job schedule")
        verbose_name_plural = _("job schedules")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PausedQueue(models.Model):
    """A queue whose jobs stay scheduled until it is resumed."""

    queue = models.CharField(_("queue"), max_length=100, primary_key=True)
    paused_at = models.DateTimeField(_("paused at"), auto_now_add=True)

    objects = LockManager()

    class Meta:
        verbose_name = _("paused queue")
        verbose_name_plural = _("paused queues")

    def __str__(self) -> str:
        return self.queue
