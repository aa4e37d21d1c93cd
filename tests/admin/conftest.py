"""Fixtures of the admin tests: rows in any state, and staff users with chosen permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from django_jobs.models import Job


@pytest.fixture
def make_job(db):
    """Create a ``Job`` row directly, in whatever state the test needs."""

    def make(name: str = "jobsapp.noop", status: str = "scheduled", **fields) -> Job:
        now = timezone.now()
        if status == "running":
            fields.setdefault("started_at", now - timedelta(seconds=125))
            fields.setdefault("worker", "host-a:4242")
            fields.setdefault("locked_until", now + timedelta(minutes=5))
        if status in ("succeeded", "failed", "cancelled", "skipped"):
            fields.setdefault("started_at", now - timedelta(seconds=65))
            fields.setdefault("finished_at", now)
        return Job.objects.create(name=name, status=status, **fields)

    return make


@pytest.fixture
def staff(db, django_user_model):
    """A logged-in staff client holding only the given ``django_jobs`` permissions."""

    def make(*codenames: str, csrf: bool = False) -> Client:
        user = django_user_model.objects.create_user(
            username=f"staff{django_user_model.objects.count()}", password="pw", is_staff=True
        )
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="django_jobs",
                                      codename__in=codenames)
        )
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user)
        return client

    return make
