"""Passwords in URLs are masked wherever gnomon prints text."""

from __future__ import annotations

import pytest

from gnomon._cli._secrets import mask_secrets


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "postgresql://app:s3cr@t:x@db/prod?sslmode=require",
            "postgresql://app:***@db/prod?sslmode=require",
        ),
        (
            "two: redis://a:b@h1 and rediss://c:d@h2/1",
            "two: redis://a:***@h1 and rediss://c:***@h2/1",
        ),
        ('locker = "postgres://u:p@h/db"', 'locker = "postgres://u:***@h/db"'),
    ],
)
def test_the_password_of_every_url_is_masked(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


@pytest.mark.parametrize(
    "text",
    ["redis://cache:6379/0", "postgresql://app@db/prod", "see https://example.com/a:b", "a:b@c"],
)
def test_text_without_a_url_password_is_left_alone(text: str) -> None:
    assert mask_secrets(text) == text
