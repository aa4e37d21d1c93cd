from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .querysets import DependencyManager, WorkflowManager


class FailurePolicy(models.TextChoices):
    """What a member's final failure does to the rest of its workflow."""

    # Cancel every member not yet finished (running ones by request); the callbacks that run
    # on failure or on finish still run.
    CANCEL = "cancel", _("cancel the rest")
    # Cancel only what depended on the failed member; the rest carries on.
    CONTINUE = "continue", _("carry on")


class RunWhen(models.TextChoices):
    """When a job enqueued ``after=`` others may run (nothing for a job without them)."""

    SUCCESS = "success", _("after they all succeeded")  # chains, dependencies, on_success
    FINISH = "finish", _("after they all finished")  # on_finish
    FAILURE = "failure", _("after they all finished, one failed")  # on_failure


class Workflow(models.Model):
    """Jobs enqueued together, linked by dependencies: a chain, a group, a graph.

    Its members are ``Job`` rows (``Job.workflow``); the links are ``JobDependency`` rows.
    ``finished_at`` is written once no member is left to run (by the worker's sweep); until
    then the status is read from the members.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("name"), max_length=200, blank=True, default="")
    on_failure = models.CharField(
        _("on failure"), max_length=16, choices=FailurePolicy.choices,
        default=FailurePolicy.CANCEL,
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # The workflow's outcome, once finished: succeeded, failed or cancelled.
    status = models.CharField(_("status"), max_length=16, blank=True, default="")

    objects = WorkflowManager()

    class Meta:
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"], name="django_jobs_wf_open",
                condition=models.Q(finished_at__isnull=True),
            ),
            models.Index(
                fields=["finished_at"], name="django_jobs_wf_finished",
                condition=models.Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name or str(self.pk)


class JobDependency(models.Model):
    """``job`` runs after ``depends_on``: one edge of a workflow's graph.

    ``settled`` flips (once, under the dependent row's lock) when the dependency's final
    outcome has been counted on ``job``: whoever flips it counts it, so an outcome is counted
    exactly once whichever process gets there first. A retry of ``depends_on`` takes the edge
    over: the edge then points at the retry. Edges go with their workflow (``pruning``), so a
    job's deletion looks for none.
    """

    job = models.ForeignKey(
        "django_jobs.Job", on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
        db_index=False,  # an index in Meta.indexes
    )
    depends_on = models.ForeignKey(
        "django_jobs.Job", on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
        db_index=False,
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
        db_index=False,
    )
    # The place of ``depends_on`` in the ``after=`` list: results are handed over in order.
    position = models.PositiveIntegerField(default=0)
    settled = models.BooleanField(default=False)

    objects = DependencyManager()

    class Meta:
        verbose_name = _("job dependency")
        verbose_name_plural = _("job dependencies")
        indexes = [
            models.Index(fields=["job", "position"], name="django_jobs_dep_job"),
            models.Index(fields=["depends_on"], name="django_jobs_dep_on"),
            models.Index(fields=["workflow"], name="django_jobs_dep_workflow"),
            # The sweep: edges whose dependency ended but were not counted yet.
            models.Index(
                fields=["settled", "depends_on"], name="django_jobs_dep_unsettled",
                condition=models.Q(settled=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} after {self.depends_on_id}"
