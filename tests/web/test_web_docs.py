"""The Python example in docs/dashboard.md runs, and the app it builds serves the dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from web_support import client

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_mounting_example_serves_the_dashboard_to_staff_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [example] = EXAMPLES
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(example, str(GUIDE), "exec"), namespace)  # noqa: S102 - the guide's own code
    scheduler = namespace["scheduler"]
    scheduler.start()
    try:
        http = client(namespace["app"])
        page = "/ops/scheduler/"
        host = {"host": "ops.example.com"}
        assert http.get(page, headers=host).status_code == 401
        assert http.get(page, headers={**host, "x-forwarded-user": "mallory"}).status_code == 401
        answer = http.get(page, headers={**host, "x-forwarded-user": "alice"})
        assert answer.status_code == 200
        assert "actions on · alice" in answer.text
        assert http.get(page, headers={"x-forwarded-user": "alice"}).status_code == 400
    finally:
        scheduler.shutdown()
        scheduler.store.close()
