from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clinrisk.adapters.local import DirectoryObjectStore, OutboxNotifier
from clinrisk.ports import ObjectNotFoundError
from clinrisk.registry.serving_pointer import (
    POINTER_KEY,
    CorruptPointerError,
    ServingPointer,
    read_pointer,
    write_pointer,
)


def test_round_trip_and_missing_key(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path)
    store.write_bytes("a/b.json", b"{}")
    assert store.read_bytes("a/b.json") == b"{}"
    assert store.exists("a/b.json")
    with pytest.raises(ObjectNotFoundError):
        store.read_bytes("a/missing.json")


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path / "store")
    with pytest.raises(ValueError, match="escapes"):
        store.write_bytes("../outside.txt", b"x")


def test_directories_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "nested" / "f.txt").write_text("hello")
    store = DirectoryObjectStore(tmp_path / "store")
    store.upload_dir(source, "runs/1/model")
    store.download_dir("runs/1/model", tmp_path / "back")
    assert (tmp_path / "back" / "nested" / "f.txt").read_text() == "hello"
    with pytest.raises(ObjectNotFoundError):
        store.download_dir("runs/2/model", tmp_path / "nothing")


def _pointer(version: int) -> ServingPointer:
    return ServingPointer(
        model_name="m",
        version=version,
        model_uri=f"models:/m/{version}",
        artifact_prefix=f"runs/{version}/model",
        checksum="0" * 64 + "x" * 4096,  # a large pointer makes a torn write more likely
        run_id="r",
        promoted_at=datetime.now(UTC),
    )


def test_readers_never_see_half_a_pointer(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path)
    write_pointer(store, _pointer(1))
    errors: list[Exception] = []
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                pointer = read_pointer(store)
                assert pointer is not None
            except Exception as error:  # any torn read fails validation
                errors.append(error)

    readers = [threading.Thread(target=read_continuously) for _ in range(3)]
    for reader in readers:
        reader.start()
    for version in range(2, 300):
        write_pointer(store, _pointer(version))
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []
    final = read_pointer(store)
    assert final is not None
    assert final.version == 299


def test_no_pointer_and_corrupt_pointer(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path)
    assert read_pointer(store) is None
    store.write_bytes(POINTER_KEY, b'{"model_name": "m"')
    with pytest.raises(CorruptPointerError):
        read_pointer(store)


def test_outbox_appends_json_lines(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path / "outbox.jsonl")
    notifier.publish("first", {"a": 1})
    notifier.publish("second", {"b": 2})
    lines = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [line["subject"] for line in lines] == ["first", "second"]
    assert lines[1]["message"] == {"b": 2}
