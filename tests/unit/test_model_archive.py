"""Unpacking a training job's model.tar.gz: the archive is written by the training container, so
it is untrusted. Malicious archives are built here byte for byte with `tarfile`, and each must be
refused before anything is written."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from clinrisk.adapters.aws import S3ObjectStore
from clinrisk.model.archive import Limits, ModelArchiveError, archive_key, publish_archive, unpack


def _archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def _file(name: str, content: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _directory(name: str) -> tuple[tarfile.TarInfo, None]:
    return _special(name, tarfile.DIRTYPE)


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_sagemaker_style_archive_unpacks_its_files(tmp_path: Path) -> None:
    # SageMaker tars /opt/ml/model from inside it: names may start with './'.
    data = _archive(_directory("."), _file("./model.json", b'{"a": 1}'), _directory("./calib"),
                    _file("./calib/isotonic.json", b"[1]"), _file("summary.json"))  # fmt: skip

    written = unpack(data, tmp_path)

    assert sorted(written) == ["calib/isotonic.json", "model.json", "summary.json"]
    assert _files_under(tmp_path) == sorted(written)
    assert (tmp_path / "model.json").read_bytes() == b'{"a": 1}'


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_file("/etc/cron.d/evil"), "outside"),
        (_file("../evil.json"), "outside"),
        (_file("nested/../../evil.json"), "outside"),
        (_special("link.json", tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
        (_special("hard.json", tarfile.LNKTYPE, "model.json"), "not a regular file"),
        (_special("fifo", tarfile.FIFOTYPE), "not a regular file"),
        (_special("device", tarfile.CHRTYPE), "not a regular file"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink", "hardlink", "fifo", "device"],
)
def test_a_malicious_member_refuses_the_whole_archive(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], reason: str
) -> None:
    # The good member comes first: nothing may be written before every member is checked.
    data = _archive(_file("model.json"), member)

    with pytest.raises(ModelArchiveError, match=reason):
        unpack(data, tmp_path / "model")

    assert not (tmp_path / "model").exists() or _files_under(tmp_path / "model") == []
    assert _files_under(tmp_path) == []


def test_a_symlink_then_a_file_through_it_cannot_escape(tmp_path: Path) -> None:
    # The classic two-step escape: a link to outside, then a file "inside" the link.
    data = _archive(_special("out", tarfile.SYMTYPE, str(tmp_path / "elsewhere")), _file("out/evil.json"))
    (tmp_path / "elsewhere").mkdir()

    with pytest.raises(ModelArchiveError, match="not a regular file"):
        unpack(data, tmp_path / "model")

    assert _files_under(tmp_path) == []


def test_the_unpacked_size_is_capped_before_writing(tmp_path: Path) -> None:
    data = _archive(_file("a.bin", b"x" * 600), _file("b.bin", b"x" * 600))

    with pytest.raises(ModelArchiveError, match="over 1000 bytes"):
        unpack(data, tmp_path, Limits(unpacked_bytes=1000))

    assert _files_under(tmp_path) == []


def test_a_highly_compressed_bomb_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    data = _archive(_file("bomb.bin", b"\0" * 2_000_000))
    assert len(data) < 10_000  # gzip shrinks it a hundredfold and more

    with pytest.raises(ModelArchiveError, match="unpacks to over"):
        unpack(data, tmp_path, Limits(unpacked_bytes=1_000_000))


def test_the_member_count_is_capped(tmp_path: Path) -> None:
    data = _archive(*(_file(f"f{i}.json") for i in range(6)))
    with pytest.raises(ModelArchiveError, match="over 5 members"):
        unpack(data, tmp_path, Limits(members=5))


def test_the_packed_size_is_capped(tmp_path: Path) -> None:
    data = _archive(_file("model.json"))
    with pytest.raises(ModelArchiveError, match="bytes, over the"):
        unpack(data, tmp_path, Limits(packed_bytes=len(data) - 1))


@pytest.mark.parametrize("data", [b"", b"not a tarball", b"\x1f\x8b\x08\x00garbage"], ids=["empty", "text", "bad-gzip"])
def test_bytes_that_are_not_a_tarball_are_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ModelArchiveError, match=r"not a readable \.tar\.gz"):
        unpack(data, tmp_path)


def test_an_archive_without_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelArchiveError, match="no files"):
        unpack(_archive(_directory("empty")), tmp_path)


# --------------------------------------------------------------------------- the archive in S3 (moto)

BUCKET = "clinrisk-artifacts-test"


@pytest.fixture
def store() -> Iterator[S3ObjectStore]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket="someone-elses-bucket")
        yield S3ObjectStore(BUCKET, client=client)


def test_publish_puts_the_files_under_the_model_prefix(store: S3ObjectStore, tmp_path: Path) -> None:
    key = "runs/r1/training/clinrisk-r1/output/model.tar.gz"
    store.write_bytes(key, _archive(_file("./model.json", b"m"), _file("./summary.json", b"s")))

    files = publish_archive(store, f"s3://{BUCKET}/{key}", "runs/r1/model")

    assert sorted(files) == ["model.json", "summary.json"]
    store.download_dir("runs/r1/model", tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"model.json": b"m", "summary.json": b"s"}


def test_an_archive_in_another_bucket_is_never_read(store: S3ObjectStore) -> None:
    with pytest.raises(ModelArchiveError, match="not in the artifacts store"):
        archive_key(store, "s3://someone-elses-bucket/runs/r1/model.tar.gz")


def test_a_missing_archive_says_the_job_wrote_no_model(store: S3ObjectStore) -> None:
    with pytest.raises(ModelArchiveError, match="no model archive at"):
        publish_archive(store, f"s3://{BUCKET}/runs/r1/training/job/output/model.tar.gz", "runs/r1/model")
    assert not store.exists("runs/r1/model/model.json")


def test_a_malicious_archive_in_s3_writes_nothing_under_the_prefix(store: S3ObjectStore) -> None:
    key = "runs/r1/training/clinrisk-r1/output/model.tar.gz"
    store.write_bytes(key, _archive(_file("model.json"), _file("../../serving/pointer.json", b"{}")))

    with pytest.raises(ModelArchiveError, match="outside"):
        publish_archive(store, f"s3://{BUCKET}/{key}", "runs/r1/model")

    listed = store.client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == [key]
