"""A FastAPI app whose reminders are durable gnomon jobs, shared by every worker.

Run it with several workers; they all use one SQLite file, and each reminder is sent
once, by whichever worker claims it first::

    GNOMON_EXAMPLE_DB=reminders.db GNOMON_EXAMPLE_OUTBOX=outbox.txt \\
        uvicorn fastapi_app:app --app-dir examples --workers 2

    curl -X POST localhost:8000/reminders -H 'content-type: application/json' \\
        -d '{"text": "stand up", "in_seconds": 5}'
    curl localhost:8000/jobs

Each worker process builds its own scheduler in the app's lifespan, that is after the
worker process exists: a scheduler is never created before a fork (uvicorn spawns its
workers; under gunicorn, do not use ``--preload`` with this pattern).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

import gnomon
from gnomon.sqlite import SQLiteStore


def send_reminder(text: str, ctx: gnomon.JobContext) -> None:
    """The task: 'send' a reminder by appending a line to the outbox file."""
    line = f"{ctx.occurrence_key} pid={os.getpid()} {text}\n"
    with open(os.environ["GNOMON_EXAMPLE_OUTBOX"], "a", encoding="utf-8") as outbox:
        outbox.write(line)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    store = SQLiteStore(os.environ["GNOMON_EXAMPLE_DB"])
    scheduler = gnomon.AsyncScheduler(store=store, timezone="UTC")
    # Every process that runs (or adds) reminders registers the task, under a stable name.
    scheduler.register(send_reminder, name="reminders.send")
    try:
        async with scheduler:
            app.state.scheduler = scheduler
            yield
    finally:
        store.close()


app = FastAPI(lifespan=lifespan)


class NewReminder(BaseModel):
    text: str
    in_seconds: float = Field(ge=0)


@app.post("/reminders", status_code=201)
async def add_reminder(reminder: NewReminder, request: Request) -> dict[str, object]:
    scheduler: gnomon.AsyncScheduler = request.app.state.scheduler
    at = datetime.now(UTC) + timedelta(seconds=reminder.in_seconds)
    # No name=: every reminder is a new job, with a unique name.
    job = await scheduler.add_job("reminders.send", gnomon.once(at), args=[reminder.text])
    return {"id": str(job.id), "name": job.name, "at": at.isoformat(), "pid": os.getpid()}


@app.get("/jobs")
async def list_jobs(request: Request) -> list[dict[str, object]]:
    scheduler: gnomon.AsyncScheduler = request.app.state.scheduler
    return [
        {
            "id": str(job.id),
            "name": job.name,
            "next_run": None if job.next_run is None else job.next_run.isoformat(),
        }
        for job in await scheduler.jobs()
    ]
