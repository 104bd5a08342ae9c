"""Studies, their resume and the whole run with the studies on an S3 server.

The server is moto's, on localhost: an S3 stand-in that speaks the S3 protocol (no AWS account is
reachable from here). The file:// tests take the same code paths on a file system that has real
folders and renames; S3 has neither, and here pyarrow's S3 client and Ray Tune's S3 storage run
for real.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from test_pipeline import _library_slice, _tiny_preset
from tune_helpers import tiny_config, tiny_data, write_space

from samplegen.cli.main import main
from samplegen.models.artifact import load_model
from samplegen.platform.downloads import local_copy
from samplegen.platform.encoded import EqAugment
from samplegen.platform.pipeline import run_pipeline
from samplegen.platform.study import plot_study, run_study

pytest.importorskip("moto.server", reason="needs moto's S3 server (the dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """host:port of an S3 server in its own process, with a bucket named `bucket`."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the S3 server did not start") from None
                time.sleep(0.2)
        fs = pafs.S3FileSystem(
            access_key="key",
            secret_key="secret",
            endpoint_override=endpoint,
            scheme="http",
            allow_bucket_creation=True,
        )
        fs.create_dir("bucket")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _uri(endpoint: str, path: str) -> str:
    # The credentials ride in the URI: the session's Ray workers, started before this module,
    # have no AWS variables in their environment, and they write the trials' checkpoints.
    return f"s3://key:secret@bucket/{path}?endpoint_override={endpoint}&scheme=http"


def _files_naming_the_secret(endpoint: str, path: str) -> list[str]:
    """The objects under `path` in the bucket whose bytes hold the URI's secret."""
    fs, root = pafs.FileSystem.from_uri(_uri(endpoint, path))
    found = []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as handle:
                if b"secret" in handle.read():
                    found.append(info.path)
    return found


def _only_tune_state(paths: list[str]) -> bool:
    """Whether these are only Ray Tune's own state files, which keep the storage URI as given
    (Tune restores a study from them); samplegen's files hold none of its credentials."""
    names = {Path(p).name for p in paths}
    return "tuner.pkl" in names and all(
        n == "tuner.pkl" or n.startswith("basic-variant-state-") for n in names
    )


def _read(endpoint: str, path: str) -> bytes:
    fs, root = pafs.FileSystem.from_uri(_uri(endpoint, path))
    with fs.open_input_stream(root) as handle:
        return bytes(handle.read())


def test_a_study_on_s3_writes_its_files_there_and_resumes_from_them(
    s3_endpoint: str, tmp_path: Path, ray_session: None, capfd: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tmp_path / "space.yaml")
    storage = _uri(s3_endpoint, "studies")
    config = dataclasses.replace(tiny_config(tmp_path, space, "s3", trials=2), storage=storage)
    result = run_study(config, tiny_data())
    assert result.path == _uri(s3_endpoint, "studies/s3")
    assert result.best_model == _uri(s3_endpoint, "studies/s3/best_model")
    table = pq.read_table(pa.BufferReader(_read(s3_endpoint, "studies/s3/results.parquet")))
    assert sorted(table.column("trial_id").to_pylist()) == sorted(
        r["trial_id"] for r in result.rows
    )
    best = load_model(local_copy(result.best_model, tmp_path / "best"))
    assert result.best is not None
    assert best.meta.metrics["best_val_loss"] == pytest.approx(result.best["best_val_loss"])
    assert plot_study(result.path) == _uri(s3_endpoint, "studies/s3/progress.png")
    assert _read(s3_endpoint, "studies/s3/progress.png")[:4] == b"\x89PNG"
    # Tune restores the study from the objects it wrote: both trials finished, none runs again.
    again = run_study(config, tiny_data(), resume=True)
    assert sorted((r["trial_id"], r["status"]) for r in again.rows) == sorted(
        (r["trial_id"], r["status"]) for r in result.rows
    )
    assert again.best == result.best
    assert _only_tune_state(_files_naming_the_secret(s3_endpoint, "studies/s3"))
    # The command line names the study by its URI, without the URI's credentials.
    assert main(["study", "plot", result.path]) == 0
    assert main(["study", "plot", _uri(s3_endpoint, "studies/none")]) == 2
    out, err = capfd.readouterr()
    options = f"?endpoint_override={s3_endpoint}&scheme=http"
    assert f"wrote s3://***@bucket/studies/s3/progress.png{options}" in out
    assert f"s3://***@bucket/studies/none{options}" in err
    assert "secret" not in out + err


def test_the_whole_run_with_its_studies_on_s3(
    s3_endpoint: str, tmp_path: Path, ray_session: None
) -> None:
    src = _library_slice(tmp_path)
    # Rescoring copies the best trials' checkpoints from S3; the refit reads the study's
    # configuration from the run folder's copy.
    preset = _tiny_preset(
        tmp_path, 2, inner_eq=EqAugment(variants=0), refine_steps=3, rescore_trials=2, refit=True
    )
    storage = _uri(s3_endpoint, "run-studies")
    done = run_pipeline(
        preset, tmp_path / "run", source=str(src), storage=storage, echo=lambda _: None
    )
    run = tmp_path / "run"
    for study in ("outer_study", "vae_study"):
        assert _read(s3_endpoint, f"run-studies/{study}/tuner.pkl")
        assert not (run / study / "tuner.pkl").exists()
        for name in ("best_config.json", "results.csv", "progress.png"):
            assert (run / study / name).read_bytes() == _read(
                s3_endpoint, f"run-studies/{study}/{name}"
            )
    chosen = json.loads((run / "vae_study" / "best_config.json").read_text())["refined_choice"]
    assert len(chosen["trials"]) == 2
    combined = load_model(done["combined_model"])
    assert combined.meta.name == "combined"
    assert combined.meta.extra["refit"]["selected"]["trial_id"] == chosen["chosen"]
    assert "vae_study progress" in (run / "index.html").read_text()
    # The URI's credentials are in none of the run's records (run.json, the stages' markers, the
    # studies' summaries) nor in samplegen's files of the studies.
    assert _only_tune_state(_files_naming_the_secret(s3_endpoint, "run-studies"))
    assert [p for p in run.rglob("*") if p.is_file() and b"secret" in p.read_bytes()] == []
    assert json.loads((run / "run.json").read_text())["storage"] == (
        f"s3://***@bucket/run-studies?endpoint_override={s3_endpoint}&scheme=http"
    )


def test_a_dataset_from_samples_in_a_bucket_and_its_rebuild(
    s3_endpoint: str, tmp_path: Path, ray_session: None
) -> None:
    from dataset_helpers import SMALL, assert_same_dataset, instrument_folder, write_tone

    from samplegen.platform.datasets import prepare_dataset

    local = tmp_path / "src"
    instrument_folder(local, 6)
    fs, root = pafs.FileSystem.from_uri(_uri(s3_endpoint, "samples"))
    for wav in sorted(local.iterdir()):
        with fs.open_output_stream(f"{root}/{wav.name}") as out:
            out.write(wav.read_bytes())
    # Past the 2 s within which a file just written is read again by the next build (S3 keeps
    # modification times to the second).
    time.sleep(3)
    source = _uri(s3_endpoint, "samples")
    said: list[str] = []
    prepare_dataset(source, tmp_path / "ds", SMALL, echo=said.append)
    assert said[0].startswith("scanning 18 of 18 audio files from s3://")
    # The dataset records where it came from without the URI's credentials.
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["source"].startswith("s3://***@bucket/samples?")
    assert [
        p for p in (tmp_path / "ds").rglob("*") if p.is_file() and b"secret" in p.read_bytes()
    ] == []
    prepare_dataset(local, tmp_path / "from_folder", SMALL, echo=None)
    assert_same_dataset(tmp_path / "ds", tmp_path / "from_folder")
    # One more sample in the bucket: the rebuild reads that one object.
    write_tone(tmp_path / "Kazoo 1_C4.wav", 60, seed=3)
    with fs.open_output_stream(f"{root}/Kazoo 1_C4.wav") as out:
        out.write((tmp_path / "Kazoo 1_C4.wav").read_bytes())
    said.clear()
    prepare_dataset(source, tmp_path / "ds", SMALL, echo=said.append)
    assert "scanning 1 of 19" in said[0] and "18 scanned before" in said[0], said
    assert any(line.startswith("encoding 1 of 19 rows") for line in said), said
