"""Settings of the reminders example: the smallest Django project that uses gnomon.

``GNOMON_DB`` is the SQLite file every process of the site shares (web workers, a
management command, a second server): one store, so each reminder is sent once.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = ["reminders"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "reminders_site.urls"
WSGI_APPLICATION = "reminders_site.wsgi.application"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
}
USE_TZ = True
TIME_ZONE = "UTC"

GNOMON_DB = os.environ.get("GNOMON_DB", str(BASE_DIR / "gnomon.sqlite3"))
REMINDERS_OUTBOX = os.environ.get("REMINDERS_OUTBOX", str(BASE_DIR / "outbox.txt"))
