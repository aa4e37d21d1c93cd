"""Create an admin user (admin / admin) and enqueue one of each example job."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from demo import jobs


class Command(BaseCommand):
    help = "Create the demo admin user and enqueue example jobs."

    def handle(self, *args, **options):
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is None:
            user = User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("created superuser admin / admin")
        jobs.import_catalogue.enqueue(items=40, created_by=user)
        jobs.flaky_webhook.enqueue(url="https://example.com/hook", created_by=user)
        jobs.sync_customer.enqueue_many([{"customer_id": c} for c in (1, 2, 1, 3, 2)])
        jobs.rebuild_search_index.enqueue()
        jobs.rebuild_search_index.enqueue(delay=5)
        jobs.heartbeat_report.enqueue()
        self.stdout.write(self.style.SUCCESS("enqueued 10 example jobs"))
