"""The WSGI entry point. Each server worker imports it, then starts its own scheduler.

gunicorn imports this module in every worker after the fork, so each worker builds its
scheduler here. With ``gunicorn --preload`` it is imported once, in the master, before
the fork: then start the scheduler from gunicorn's ``post_fork`` hook instead (see
docs/stores.md), since threads and open database files do not survive a fork.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reminders_site.settings")

application = get_wsgi_application()

from reminders.gnomon_scheduler import get_scheduler  # noqa: E402 - needs the apps loaded

get_scheduler()
