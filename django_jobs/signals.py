"""Django signals sent around every run, in the process that runs it."""

from django.dispatch import Signal

#: Sent when a run starts. Arguments: ``job`` (the ``Job`` row).
job_started = Signal()

#: Sent when a run's outcome is written. Arguments: ``job``, ``status``, ``result``, ``error``.
job_finished = Signal()
