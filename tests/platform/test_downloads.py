"""Where a study's files are, for a folder or a storage URI with options."""

from __future__ import annotations

from pathlib import Path

from samplegen.platform.downloads import join_location, location_name
from samplegen.platform.study import StudyFiles


def test_parts_join_a_uris_path_and_leave_its_options_at_the_end() -> None:
    uri = "s3://bucket/studies?region=eu-west-1&endpoint_override=localhost:9000"
    assert join_location(uri, "outer", "best_model") == (
        "s3://bucket/studies/outer/best_model?region=eu-west-1&endpoint_override=localhost:9000"
    )
    assert join_location("gs://bucket/studies/", "vae") == "gs://bucket/studies/vae"
    assert join_location("/data/studies", "vae") == str(Path("/data/studies/vae"))
    assert location_name(f"{uri.replace('studies', 'studies/outer')}") == "outer"
    assert location_name("/data/studies/outer/") == "outer"


def test_a_study_on_a_uri_with_options_is_found_under_its_name() -> None:
    # pyarrow parses the options without connecting; before, the name went inside them and the
    # study's URI named the storage root.
    files = StudyFiles("s3://bucket/studies?region=eu-west-1&endpoint_override=localhost:9000", "a")
    assert files.root == "bucket/studies/a"
    assert files.uri == "s3://bucket/studies/a?region=eu-west-1&endpoint_override=localhost:9000"
    assert files.location("best_model").startswith("s3://bucket/studies/a/best_model?")
