"""``/reminders/``: POST adds a reminder (a durable once() job), GET lists the jobs."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

import gnomon
from reminders.gnomon_scheduler import get_scheduler


@require_http_methods(["GET", "POST"])
def reminders(request: HttpRequest) -> JsonResponse:
    scheduler = get_scheduler()
    if request.method == "GET":
        jobs = [{"name": job.name, "next_run": job.next_run} for job in scheduler.jobs()]
        return JsonResponse({"jobs": jobs})
    try:
        text = request.POST["text"]
        delay = timedelta(seconds=float(request.POST.get("in_seconds", "0")))
    except (KeyError, ValueError, OverflowError):
        return JsonResponse({"error": "give text and in_seconds (a number)"}, status=400)
    # The scheduler's clock, not datetime.now(): tests drive it with a FakeClock.
    at = scheduler.clock.now() + delay
    job = scheduler.add_job("reminders.send", gnomon.once(at), args=[text])
    return JsonResponse({"id": str(job.id), "name": job.name, "at": at}, status=201)
