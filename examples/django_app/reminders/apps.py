from __future__ import annotations

from django.apps import AppConfig


class RemindersConfig(AppConfig):
    name = "reminders"

    def ready(self) -> None:
        """Starts no scheduler, on purpose.

        ``ready()`` runs in every process that loads the apps: ``manage.py migrate``,
        ``test`` and ``shell``, and a gunicorn master that preloads the app before it
        forks its workers. A scheduler started here would run jobs in all of them. The
        scheduler is built on first use, per process (``gnomon_scheduler.get_scheduler``),
        and the WSGI module asks for it when a worker starts.
        """
