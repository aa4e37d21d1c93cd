"""The locks page: holders and expiry; release only if expired, or confirmed with permission."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from django_jobs.models import JobTypeLock

LIST = reverse("admin:django_jobs_jobtypelock_changelist")


def release_url(lock: JobTypeLock) -> str:
    return reverse("admin:django_jobs_jobtypelock_release", args=[quote(lock.pk)])


@pytest.fixture
def lock(make_job):
    def make(expired: bool, key: str = "jobsapp.locked_sleep") -> JobTypeLock:
        job = make_job("jobsapp.locked_sleep", "running")
        delta = timedelta(minutes=-3) if expired else timedelta(minutes=3)
        return JobTypeLock.objects.create(key=key, job=job, claim_id=uuid.uuid4(),
                                          worker="host-b:77", locked_until=timezone.now() + delta)
    return make


def test_the_list_shows_holder_worker_and_expiry(admin_client, lock):
    held = lock(expired=False)
    lock(expired=True, key="per:customer/1")
    html = admin_client.get(LIST).content.decode()
    assert f"/admin/django_jobs/job/{held.job_id}/change/" in html
    assert "host-b:77" in html
    assert "held, expires in 2 min" in html or "held, expires in 3 min" in html
    assert "expired 3 min" in html


def test_an_expired_lock_is_released_on_post(admin_client, lock):
    expired = lock(expired=True, key="per:customer/1")
    page = admin_client.get(release_url(expired))
    assert page.status_code == 200 and JobTypeLock.objects.exists()  # GET changes nothing
    assert admin_client.post(release_url(expired)).status_code == 302
    assert not JobTypeLock.objects.exists()


def test_a_held_lock_needs_the_confirmation_and_the_same_holder(admin_client, lock):
    held = lock(expired=False)
    admin_client.post(release_url(held))
    assert JobTypeLock.objects.exists()
    admin_client.post(release_url(held), {"confirm": "yes", "claim_id": str(uuid.uuid4())})
    assert JobTypeLock.objects.exists()  # somebody else holds it now: kept
    html = admin_client.get(release_url(held)).content.decode()
    assert 'name="confirm"' in html and str(held.claim_id) in html
    admin_client.post(release_url(held), {"confirm": "yes", "claim_id": str(held.claim_id)})
    assert not JobTypeLock.objects.exists()


def test_releasing_needs_permission_and_csrf(staff, lock):
    expired = lock(expired=True)
    assert staff("view_jobtypelock").post(release_url(expired)).status_code == 403
    assert staff("view_jobtypelock").get(release_url(expired)).status_code == 403
    client = staff("view_jobtypelock", "delete_jobtypelock", csrf=True)
    assert client.post(release_url(expired)).status_code == 403
    assert JobTypeLock.objects.exists()
    html = staff("view_jobtypelock").get(LIST).content.decode()
    assert "release_expired" not in html


def test_the_bulk_action_releases_only_expired_locks(admin_client, lock):
    held = lock(expired=False)
    expired = lock(expired=True, key="other")
    admin_client.post(LIST, {"action": "release_expired",
                             "_selected_action": [held.pk, expired.pk]})
    assert list(JobTypeLock.objects.values_list("pk", flat=True)) == [held.pk]


def test_locks_cannot_be_added_edited_or_deleted_by_hand(admin_client, lock):
    held = lock(expired=False)
    assert admin_client.get(reverse("admin:django_jobs_jobtypelock_add")).status_code == 403
    delete = reverse("admin:django_jobs_jobtypelock_delete", args=[quote(held.pk)])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert JobTypeLock.objects.exists()
