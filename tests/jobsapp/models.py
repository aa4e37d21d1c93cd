"""Side-effect tables: what the test jobs did, recorded so tests can prove it from the database."""

from django.db import models


class Execution(models.Model):
    """One row per run of a job that records itself; ``token`` is unique, so a second run of
    the same work is an IntegrityError, not a silent duplicate."""

    token = models.CharField(max_length=100, unique=True)
    job_id = models.UUIDField(null=True)
    worker = models.CharField(max_length=100, default="")
    started = models.FloatField(default=0)
    ended = models.FloatField(default=0)

    def __str__(self) -> str:
        return self.token


class Interval(models.Model):
    """Start/end of runs of locked jobs, to check that no two overlap."""

    key = models.CharField(max_length=100)
    job_id = models.UUIDField()
    started = models.FloatField()
    ended = models.FloatField(null=True)

    def __str__(self) -> str:
        return f"{self.key} {self.started}-{self.ended}"


class OccurrenceRun(models.Model):
    """One row per run of ``jobsapp.scheduling_tick``; ``occurrence`` is unique, so a second run
    of the same occurrence is an IntegrityError, not a silent duplicate."""

    occurrence = models.DateTimeField(unique=True)
    job_id = models.UUIDField()
    worker = models.CharField(max_length=100, default="")

    def __str__(self) -> str:
        return f"{self.occurrence} by {self.worker}"
