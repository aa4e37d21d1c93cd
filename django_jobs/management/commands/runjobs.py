"""``manage.py runjobs``: parse the flags, build a ``Worker``, run it, exit with its status."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs.exceptions import JobTablesMissing
from django_jobs.jobtypes import registry
from django_jobs.models.tables import require_tables
from django_jobs.worker.loop import EXIT_HUNG, EXIT_RELEASED, Worker, WorkerOptions

logger = logging.getLogger("django_jobs")


def startup_report(queues: list[str]) -> list[tuple[int, str]]:
    """What a starting worker says about the jobs it knows: ``(level, message)`` pairs."""
    job_types = list(registry)
    if not job_types:
        return [(logging.WARNING, (
            "no job is registered: declare jobs with @job in a jobs.py module of an app in "
            "INSTALLED_APPS; this worker can run nothing"
        ))]
    labels = sorted({_app_label(job_type.module) for job_type in job_types})
    report = [(logging.INFO, (
        f"{len(job_types)} job{'s' if len(job_types) != 1 else ''} registered, from "
        f"{', '.join(labels)}"
    ))]
    used = sorted({job_type.queue for job_type in job_types})
    for queue in queues:
        if queue not in used:
            report.append((logging.WARNING, (
                f"--queue {queue!r}: no registered job uses this queue (queues in use: "
                f"{', '.join(used)})"
            )))
    return report


def _app_label(module: str) -> str:
    config = apps.get_containing_app_config(module)
    return config.label if config is not None else module


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(minimum_exclusive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if value != value or value < 0 or (minimum_exclusive and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be {'positive' if minimum_exclusive else 'zero or positive'}, got {text}"
            )
        return value

    return parse


class Command(BaseCommand):
    help = "Run a django-jobs worker: claim due jobs, run them, schedule recurring ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue", action="append", dest="queues", default=[], metavar="NAME",
            help="Only take jobs of this queue (repeatable; default: every queue).",
        )
        parser.add_argument(
            "--concurrency", type=_positive_int, default=1,
            help="Jobs run at once by this process, each on its own thread (default 1).",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Run what is due, then exit."
        )
        parser.add_argument(
            "--max-jobs", type=_positive_int, default=None,
            help="Exit after claiming this many jobs (let a supervisor start a fresh process).",
        )
        parser.add_argument(
            "--poll-interval", type=_seconds(True), default=None,
            help="Seconds between polls when idle (default DJANGO_JOBS['POLL_INTERVAL']).",
        )
        parser.add_argument(
            "--grace", type=_seconds(False), default=None,
            help="Seconds running jobs get to finish on SIGTERM before they are released "
            "back to the queue (default DJANGO_JOBS['GRACE']).",
        )
        parser.add_argument(
            "--no-scheduler", action="store_false", dest="scheduler",
            help="Do not create the runs of recurring jobs in this process.",
        )

    def handle(self, *args, **options) -> None:
        if not logging.getLogger("django_jobs").handlers and not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO if options["verbosity"] >= 1 else logging.WARNING,
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                stream=sys.stderr,
            )
        queues = [q for q in options["queues"]]
        for queue in queues:
            if not queue.strip():
                raise CommandError("--queue needs a non-empty queue name")
        # Once, here: the loop would take a missing table for a passing database hiccup and
        # retry forever.
        try:
            require_tables()
        except JobTablesMissing as exc:
            raise CommandError(str(exc)) from None
        for level, message in startup_report(queues):
            logger.log(level, message)
        try:
            worker_options = WorkerOptions(
                queues=queues,
                concurrency=options["concurrency"],
                burst=options["burst"],
                max_jobs=options["max_jobs"],
                poll_interval=options["poll_interval"],
                grace=options["grace"],
                scheduler=options["scheduler"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        status = Worker(worker_options).run()
        if status in (EXIT_RELEASED, EXIT_HUNG):
            # Released (or hung) jobs may still be executing on their threads: leave now,
            # without waiting for interpreter shutdown, so they cannot touch anything more.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        if status:
            sys.exit(status)
