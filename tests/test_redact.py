"""Credentials in storage URIs are hidden in what samplegen prints and records."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samplegen.redact import redact, redact_values, redacted_console


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://KEY:SECRET@bucket/studies", "s3://***@bucket/studies"),
        ("s3://KEY@bucket/studies?scheme=http", "s3://***@bucket/studies?scheme=http"),
        (
            "study: gs://user:p%40ss@bucket/a?endpoint_override=host:9000",
            "study: gs://***@bucket/a?endpoint_override=host:9000",
        ),
        (
            "s3://bucket/x?region=eu&secret_key=S&session_token=T&scheme=http",
            "s3://bucket/x?region=eu&secret_key=***&session_token=***&scheme=http",
        ),
        # Two URIs in one message, each hidden on its own.
        ("a s3://k:s@b/x and gs://t@c/y", "a s3://***@b/x and gs://***@c/y"),
        # Nothing to hide: local paths, "@" in a path or a name, URIs without a user part.
        ("/work/runs/quick@2/studies", "/work/runs/quick@2/studies"),
        ("s3://bucket/notes/Piano@C4.wav", "s3://bucket/notes/Piano@C4.wav"),
        ("file:///tmp/store?use_mmap=false", "file:///tmp/store?use_mmap=false"),
        ("mail user@example.org", "mail user@example.org"),
    ],
)
def test_redact_hides_the_user_part_and_credential_options(text: str, shown: str) -> None:
    assert redact(text) == shown


_WORD = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=", min_size=8
)


@given(key=_WORD, secret=_WORD, scheme=st.sampled_from(["s3", "gs", "hdfs"]))
def test_no_credential_survives_and_redacting_twice_changes_nothing(
    key: str, secret: str, scheme: str
) -> None:
    uri = f"{scheme}://{key}:{secret}@bucket/studies/run?scheme=http"
    shown = redact(uri)
    assert secret not in shown and key not in shown
    assert shown == f"{scheme}://***@bucket/studies/run?scheme=http"
    assert redact(shown) == shown


def test_redact_values_walks_json_like_records() -> None:
    record = {"storage": "s3://k:s@b/x", "runs": ["gs://t@c/y", 3], "seed": 0, "none": None}
    assert redact_values(record) == {
        "storage": "s3://***@b/x",
        "runs": ["gs://***@c/y", 3],
        "seed": 0,
        "none": None,
    }


def test_the_console_is_redacted_only_inside_the_block(capsys: pytest.CaptureFixture[str]) -> None:
    with redacted_console():
        print("study: s3://k:s@b/x")
        print("failed: s3://k:s@b/y", file=sys.stderr)
        sys.stdout.writelines(["lines: gs://t@c/w\n"])
        assert sys.stdout.isatty() in (True, False)  # the stream's own attributes pass through
    print("after: s3://k:s@b/z")
    out, err = capsys.readouterr()
    assert out == "study: s3://***@b/x\nlines: gs://***@c/w\nafter: s3://k:s@b/z\n"
    assert err == "failed: s3://***@b/y\n"
