from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import clock
from ..exceptions import InvalidJobState
from .querysets import JobManager


class JobStatus(models.TextChoices):
    # Enqueued after other jobs (a workflow): the claim never picks it; it becomes scheduled
    # when its dependencies are done.
    WAITING = "waiting", _("waiting")
    SCHEDULED = "scheduled", _("scheduled")  # waiting for its run_at and a free worker
    RUNNING = "running", _("running")  # claimed by a worker, heartbeating
    SUCCEEDED = "succeeded", _("succeeded")  # returned; result stored
    FAILED = "failed", _("failed")  # raised, timed out, or its worker was lost
    CANCELLED = "cancelled", _("cancelled")  # cancelled before or during its run
    SKIPPED = "skipped", _("skipped")  # precheck said there was nothing to do


def unique_slot(name: str, unique_key: str | None) -> str | None:
    """``Job.unique_slot`` of a scheduled row: a unique key is scoped to its job type."""
    if unique_key is None:
        return None
    return hashlib.sha256(f"{name}\0{unique_key}".encode()).hexdigest()


def scheduled_state(name: str, unique_key: str | None) -> dict[str, Any]:
    """The fields of a row that becomes ``scheduled`` (again): a retry, a release.

    It holds its unique key (``unique_slot``) like any pending job, and shows nothing of an
    earlier run: no progress, message, ETA, result, error, worker, claim, lease or cancel
    request. Whoever writes it applies the unique policy first: see
    ``JobQuerySet.hold_unique_slot()``.
    """
    return {
        "status": JobStatus.SCHEDULED,
        "unique_slot": unique_slot(name, unique_key),
        "progress": 0.0,
        "progress_message": "",
        "eta": None,
        "cancel_requested_at": None,
        "result": None,
        "error": "",
        "worker": "",
        "claim_id": None,
        "owner": None,
        "started_at": None,
        "heartbeat_at": None,
        "locked_until": None,
        "finished_at": None,
    }


FINISHED_STATUSES = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.SKIPPED,
)


class Job(models.Model):
    """One run of a registered job: a row is the unit of work, history and control."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("name"), max_length=200)
    data = models.JSONField(_("payload"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.SCHEDULED
    )
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.IntegerField(_("priority"), default=0)
    run_at = models.DateTimeField(_("run at"), default=timezone.now)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    max_attempts = models.PositiveIntegerField(_("max attempts"), default=1)
    progress = models.FloatField(_("progress"), default=0.0)
    progress_message = models.TextField(_("progress message"), blank=True, default="")
    eta = models.DateTimeField(_("estimated end"), null=True, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    worker = models.CharField(_("worker"), max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)
    unique_key = models.CharField(_("unique key"), max_length=255, null=True, blank=True)
    # A digest of (name, unique_key) while the row is scheduled, NULL otherwise: a plain unique
    # constraint on it gives "one pending job per key and type" on every database, partial
    # indexes or not.
    unique_slot = models.CharField(max_length=255, null=True, blank=True, editable=False)
    lock_key = models.CharField(_("lock key"), max_length=255, null=True, blank=True)
    # What the job's concurrency and rate limits count under ("<name>" or "<name>:<key>"),
    # computed at enqueue; NULL for a job without limits of its own.
    limit_key = models.CharField(_("limit key"), max_length=255, null=True, blank=True)
    # Times this work went back to the queue through Snooze: bounded by max_snoozes.
    snoozes = models.PositiveIntegerField(_("snoozes"), default=0)
    # A new id at every claim. Every write about a running row is fenced on it, so a worker
    # that lost its claim (written off as dead, job released) can no longer change the row.
    claim_id = models.UUIDField(null=True, blank=True, editable=False)
    # The process (``Worker`` row) holding the claim: the run lives as long as that process
    # keeps beating. No database constraint: worker rows are removed long after.
    owner = models.ForeignKey(
        "django_jobs.Worker",
        verbose_name=_("worker process"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,  # a partial index in Meta.indexes
    )
    rescheduled_from = models.ForeignKey(
        "self",
        verbose_name=_("rescheduled from"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rescheduled_runs",
        db_constraint=False,
        db_index=False,  # a partial index in Meta.indexes
    )
    # No database constraint: the job tables may live in a database of their own.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,  # a partial index in Meta.indexes
    )
    # The occurrence a recurring job's row was created for; unique per name, so two schedulers
    # creating the same occurrence collide in the database instead of running it twice.
    occurrence = models.DateTimeField(_("occurrence"), null=True, blank=True, editable=False)
    meta = models.JSONField(_("meta"), default=dict, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    # Workflows (``JobDependency`` holds the links): the workflow this row belongs to; how many
    # of its dependencies have not ended yet, and how many ended badly (failed, cancelled);
    # when it may run once they have all ended (``RunWhen``; blank without dependencies).
    workflow = models.ForeignKey(
        "django_jobs.Workflow",
        verbose_name=_("workflow"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,  # a partial index in Meta.indexes
    )
    waiting_for = models.PositiveIntegerField(_("waiting for"), default=0)
    failed_dependencies = models.PositiveIntegerField(_("failed dependencies"), default=0)
    run_when = models.CharField(_("run when"), max_length=16, blank=True, default="")

    objects = JobManager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-created_at"]
        # Partial indexes (PostgreSQL, SQLite) hold only the rows their queries look for, so a
        # new job touches few of them and the claim's index stays the size of the backlog.
        # MariaDB ignores the conditions and builds whole indexes: the leading ``status``
        # column keeps those selective too.
        indexes = [
            # The claim: WHERE status='scheduled' AND run_at<=now ORDER BY priority DESC, run_at.
            models.Index(
                fields=["status", "-priority", "run_at", "created_at"],
                name="django_jobs_due",
                condition=models.Q(status="scheduled"),
            ),
            # The next delayed job (an idle worker sleeps until its run_at).
            models.Index(
                fields=["status", "run_at"],
                name="django_jobs_next_run",
                condition=models.Q(status="scheduled"),
            ),
            # Running or latest jobs of a name (locks, dashboard, registry.latest()).
            models.Index(fields=["name", "status"], name="django_jobs_name_status"),
            models.Index(fields=["name", "-created_at"], name="django_jobs_name_created"),
            # Rescue of rows run in-process (no owner): WHERE status='running' AND
            # locked_until < now.
            models.Index(
                fields=["status", "locked_until"],
                name="django_jobs_lease",
                condition=models.Q(status="running"),
            ),
            # Rescue: the running rows of a lost worker.
            models.Index(
                fields=["owner"],
                name="django_jobs_owner",
                condition=models.Q(status="running"),
            ),
            models.Index(
                fields=["unique_key"],
                name="django_jobs_unique_key",
                condition=models.Q(unique_key__isnull=False),
            ),
            # Pruning: WHERE finished_at < cutoff.
            models.Index(
                fields=["finished_at"],
                name="django_jobs_finished",
                condition=models.Q(finished_at__isnull=False),
            ),
            # The foreign keys (SET_NULL on delete looks rows up by them); most rows have none.
            models.Index(
                fields=["rescheduled_from"],
                name="django_jobs_rescheduled_from",
                condition=models.Q(rescheduled_from__isnull=False),
            ),
            models.Index(
                fields=["workflow", "status"],
                name="django_jobs_job_workflow",
                condition=models.Q(workflow__isnull=False),
            ),
            models.Index(
                fields=["created_by"],
                name="django_jobs_created_by",
                condition=models.Q(created_by__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["unique_slot"], name="django_jobs_one_pending_per_key"),
            models.UniqueConstraint(
                fields=["name", "occurrence"], name="django_jobs_one_run_per_occurrence"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="django_jobs_progress_range",
            ),
        ]
        permissions = [
            ("cancel_job", "Can cancel jobs"),
            ("retry_job", "Can retry jobs"),
            ("run_job", "Can run jobs now"),
            ("pause_job", "Can pause and resume queues and recurring jobs"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status}) {self.pk}"

    @classmethod
    def check(cls, **kwargs: Any) -> list[checks.CheckMessage]:
        # On MariaDB the partial indexes are built whole, by design (see Meta.indexes): the
        # warning that their conditions are ignored would only be noise on every migrate.
        return [message for message in super().check(**kwargs) if message.id != "models.W037"]

    def retry(self, *, created_by=None, replace: bool = False) -> Job:
        """Schedule a new run with this run's payload, linked by ``rescheduled_from``.

        Refused while this run is scheduled or running: a retry must never become a second
        concurrent run of the same work. While a retry of this run is still pending (scheduled
        or running), that retry is returned instead of another one. The new run holds the
        unique key under the job type's ``unique`` policy: with "skip" a pending job with the
        same key is returned instead, with "replace" (``replace=True``: the policy is declared
        on the job type, which ``registry.retry()`` reads for you) that job is cancelled.
        """
        db = Job.objects.db
        with transaction.atomic(using=db):
            # Locking this row makes concurrent retries of it take turns (PostgreSQL, MariaDB),
            # so that the second one finds the first one's row.
            current = (
                Job.objects.select_for_update().filter(pk=self.pk)
                .values_list("status", flat=True).first()
            )
            if current not in FINISHED_STATUSES:
                raise InvalidJobState(
                    f"job {self.pk} is {current or 'gone'}; only a finished job can be retried"
                )
            pending = Job.objects.pending().filter(rescheduled_from=self.pk).first()
            if pending is not None:
                return pending
            now = clock.now()
            retry = Job(
                name=self.name, data=self.data, queue=self.queue, priority=self.priority,
                run_at=now, created_at=now, max_attempts=self.max_attempts,
                lock_key=self.lock_key, limit_key=self.limit_key, unique_key=self.unique_key,
                rescheduled_from_id=self.pk,
                meta=self.meta,
                created_by_id=getattr(created_by, "pk", created_by) or self.created_by_id,
                **scheduled_state(self.name, self.unique_key),
            )
            return Job.objects.insert_scheduled(retry, replace=replace)

    def run_now(self) -> bool:
        """Make this scheduled job due at once; ``False`` if it is no longer scheduled."""
        now = clock.now()
        won = Job.objects.filter(pk=self.pk, status=JobStatus.SCHEDULED).update(run_at=now)
        if won:
            self.run_at = now
        return won == 1

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration(self):
        if self.started_at is None:
            return None
        end = self.finished_at or clock.now()
        return end - self.started_at
