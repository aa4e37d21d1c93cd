from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from .querysets import WorkerManager


class WorkerState(models.TextChoices):
    RUNNING = "running", _("running")  # claiming and running jobs, heartbeating
    STOPPING = "stopping", _("stopping")  # claims nothing more; finishing or releasing its runs
    LOST = "lost", _("lost")  # missed WORKER_LOST_AFTER of heartbeats; its runs were recovered


#: States in which a worker row may still beat. ``lost`` is final: a worker written off by a
#: peer can never revive its row, so what the peer decided about its runs stands.
LIVE_STATES = (WorkerState.RUNNING, WorkerState.STOPPING)


class Worker(models.Model):
    """One process that runs jobs (a ``runjobs`` worker, or a process inside ``fn.run()``).

    Liveness is this row's ``heartbeat_at``, written with the database's clock: a process
    whose row has not beaten for ``WORKER_LOST_AFTER`` is lost, and its runs are recovered.
    """

    class Kind(models.TextChoices):
        WORKER = "worker", _("worker")  # manage.py runjobs
        RUN = "run", _("run()")  # a process running fn.run() in its own thread

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.WORKER)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("pid"))
    queues = models.JSONField(_("queues"), default=list, blank=True)  # empty: every queue
    concurrency = models.PositiveIntegerField(_("concurrency"), default=1)
    busy = models.PositiveIntegerField(_("runs held"), default=0)
    version = models.CharField(_("django-jobs version"), max_length=50, blank=True, default="")
    # The job names this process has registered, and those switched off on its host: during a
    # deploy old and new code run side by side, and only what no live worker knows is removed.
    names = models.JSONField(_("registered jobs"), default=list, blank=True)
    disabled = models.JSONField(_("disabled here"), default=list, blank=True)
    started_at = models.DateTimeField(_("started at"))
    heartbeat_at = models.DateTimeField(_("last heartbeat"))
    state = models.CharField(
        _("state"), max_length=16, choices=WorkerState.choices, default=WorkerState.RUNNING
    )

    objects = WorkerManager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["host", "pid"]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="django_jobs_worker_beat")]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """``host:pid``, as written in ``Job.worker``."""
        return f"{self.host}:{self.pid}"
