"""``manage.py runjobs``: parse the flags, build a ``Worker``, run it, exit with its status."""

from __future__ import annotations

import logging
import os
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs.worker.loop import EXIT_HUNG, EXIT_RELEASED, Worker, WorkerOptions


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(minimum_exclusive: bool):
    import argparse

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
