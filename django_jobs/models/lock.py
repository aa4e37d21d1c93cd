from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .querysets import JobTypeLockManager, RateTokenManager


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
    # A slot of a concurrency limit: the key is "<group>#<n>" for n below ``capacity``, so the
    # primary key refuses a second holder of a slot as it does for a lock key. NULL for a lock.
    slot_of = models.CharField(_("slot of"), max_length=255, null=True, blank=True,
                               db_index=True)
    capacity = models.PositiveIntegerField(_("capacity"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = JobTypeLockManager()

    class Meta:
        verbose_name = _("job type lock")
        verbose_name_plural = _("job type locks")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class RateToken(models.Model):
    """One start that a rate limit allows per period: N tokens for "N per period".

    Taking a token is a guarded ``UPDATE ... SET free_at = <db now> + period WHERE free_at <=
    <db now>``, so one token serves at most one claim in any period, and a limit of N never
    lets more than N claims through in any interval of that length (a sliding window).
    """

    key = models.CharField(_("key"), max_length=255, primary_key=True)  # "<group>#<n>"
    group = models.CharField(_("group"), max_length=255)
    number = models.PositiveIntegerField(_("number"))
    capacity = models.PositiveIntegerField(_("capacity"))
    free_at = models.DateTimeField(_("free at"))

    objects = RateTokenManager()

    class Meta:
        verbose_name = _("rate token")
        verbose_name_plural = _("rate tokens")
        ordering = ["key"]
        indexes = [
            # A claim takes a group's free tokens.
            models.Index(fields=["group", "free_at"], name="django_jobs_rate_free"),
            # A claim finds the groups at their limit among the tokens used in their period.
            models.Index(fields=["free_at"], name="django_jobs_rate_used"),
        ]

    def __str__(self) -> str:
        return self.key
