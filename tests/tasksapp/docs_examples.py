"""Examples from Django's Tasks documentation (docs/topics/tasks.txt), unchanged.

Not a ``tasks`` module: the test settings list it in the backend's ``OPTIONS["MODULES"]``.
"""

from django.core.mail import send_mail
from django.tasks import task


@task
def email_users(emails, subject, message):
    return send_mail(
        subject=subject, message=message, from_email=None, recipient_list=emails
    )


@task()
def double_dictionary(key):
    return {key: key * 2}


@task()
def calculate_meaning_of_life() -> int:
    return 42
