"""Where a study's files are, for a folder or a storage URI with options."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_a_model_replaced_on_a_uri_is_never_half_one_half_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.fs as pafs
    import torch

    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import ArtifactError, load_model, save_model
    from samplegen.models.registry import build_model

    files = StudyFiles(f"file://{tmp_path}/remote", "s")
    models = {}
    for name, latent in (("a", 3), ("b", 4)):
        torch.manual_seed(len(name) + latent)
        model = build_model("vae", {"latent": latent}, (32,))
        models[name] = save_model(tmp_path / name, model, codec=CodecConfig())
    files.upload_dir(models["a"], "best_model")
    files.upload_dir(models["b"], "best_model")
    landed = load_model(tmp_path / "remote" / "s" / "best_model")
    assert landed.meta.hparams["latent"] == 4

    # Cut short while copying the weights (as a killed process would be): no configuration is
    # left to pair with the other model's weights, so the folder reads as no model at all.
    real = pafs.copy_files

    def cut(source: str, destination: str, **kw: object) -> None:
        if destination.endswith(".safetensors"):
            raise OSError("killed")
        real(source, destination, **kw)

    monkeypatch.setattr(pafs, "copy_files", cut)
    with pytest.raises(OSError, match="killed"):
        files.upload_dir(models["a"], "best_model")
    with pytest.raises(ArtifactError, match="config.json: missing"):
        load_model(tmp_path / "remote" / "s" / "best_model")
