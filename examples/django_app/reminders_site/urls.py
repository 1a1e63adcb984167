from __future__ import annotations

from django.urls import path
from reminders import views

urlpatterns = [path("reminders/", views.reminders, name="reminders")]
