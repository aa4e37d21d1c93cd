"""Run the jobs enqueued since ``--since`` with burst workers until none of them is pending,
then print their outcomes: ``scripts/demo --once``."""

import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from django_jobs import clock
from django_jobs.models import Job
from django_jobs.worker.loop import Worker, WorkerOptions

#: The demo's slowest path (retries with backoff, a delayed job) ends well within this.
DEADLINE = 120.0


class Command(BaseCommand):
    help = "Drain this run's demo jobs with burst workers and print their outcomes."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="ISO time the demo run started.")

    def handle(self, *args, **options):
        since = datetime.fromisoformat(options["since"])
        mine = Job.objects.filter(created_at__gte=since)
        deadline = time.monotonic() + DEADLINE
        while True:
            Worker(WorkerOptions(burst=True, concurrency=4, scheduler=False,
                                 install_signals=False)).run()
            pending = mine.pending()
            if not pending.exists():
                break
            if time.monotonic() > deadline:
                raise CommandError(f"{pending.count()} demo job(s) still pending after "
                                   f"{DEADLINE:g} s")
            # Only delayed runs (retries, run_at in the future) are left: sleep until the next.
            wait = (pending.next_run_at() or clock.now()) - clock.now()
            time.sleep(min(max(wait.total_seconds(), 0.05), 5.0))
        for job in mine.order_by("created_at"):
            first_line = (job.error.splitlines() or [""])[0]
            outcome = first_line if job.error else str(job.result)
            self.stdout.write(f"{job.status:10} {job.name:28} attempt {job.attempt}  {outcome}")
