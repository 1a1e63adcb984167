"""The web dashboard: ``dashboard(scheduler_or_store, ...)`` is an ASGI app.

Needs the ``web`` extra (Starlette and Jinja2; uvicorn serves it from the ``gnomon``
command): ``pip install 'gnomon[web]'``.
"""

from __future__ import annotations

from gnomon.web._app import dashboard

__all__ = ["dashboard"]
