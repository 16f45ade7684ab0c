"""Issue 11: named pipes, devices, sockets and oversized files at every entry point that reads a path.

Opening a named pipe (FIFO) for reading waits for a writer, and /dev/zero never ends: either once hung
`liveness predict` and curation with no row at all. Each must now give its own row, at once.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from liveness.data import decode
from liveness.data.curate import CurationSettings, process_chunk
from liveness.data.decode import ImageRejected, load_image, read_image_file
from liveness.data.inputs import find_input_files, read_inputs
from liveness.data.records import SourceRecord
from liveness.data.sources.common import list_files, looks_like_image, walk_files
from liveness.data.video import VideoError, sample_frames
from tests.fixtures.bad_images import astronaut

pytestmark = [pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX"),
              pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _write_later(path: Path, data: bytes, hold_s: float = 0.5) -> threading.Thread:
    """A writer attached to the pipe before this returns, so the reader always finds one (no race with a thread
    still on its way to open()); it sends ``data`` after ``hold_s`` and then closes, which the reader sees as
    the end."""
    keeper = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader for a moment, so opening to write does not wait
    descriptor = os.open(path, os.O_WRONLY)
    os.close(keeper)

    def write() -> None:
        time.sleep(hold_s)  # the reader opens the pipe meanwhile
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _reason(call) -> tuple[str, str]:
    with pytest.raises(ImageRejected) as caught:
        call()
    return caught.value.reason, str(caught.value)


class TestReadingAPath:
    def test_a_pipe_nobody_writes_to_is_an_empty_file_at_once(self, tmp_path):
        started = time.monotonic()
        reason, message = _reason(lambda: load_image(_fifo(tmp_path / "pipe.jpg")))
        assert reason == "empty_file" and "named pipe" in message
        assert time.monotonic() - started < 5

    def test_a_pipe_with_a_writer_is_read_to_the_end(self, tmp_path, jpeg):
        pipe = _fifo(tmp_path / "pipe.jpg")
        writer = _write_later(pipe, jpeg)  # the reader must wait for data that comes late
        decoded = load_image(pipe)
        writer.join(5)
        assert decoded.pixels.shape == (512, 512, 3) and decoded.format == "JPEG"

    def test_a_silent_writer_is_refused_after_the_idle_limit(self, tmp_path, monkeypatch):
        monkeypatch.setattr(decode, "PIPE_IDLE_S", 0.3)
        pipe = _fifo(tmp_path / "pipe.jpg")
        writer = _write_later(pipe, b"", hold_s=2.0)
        reason, message = _reason(lambda: read_image_file(pipe))
        writer.join(5)
        assert reason == "unreadable" and "sent nothing" in message

    def test_a_pipe_that_sends_too_much_is_too_large(self, tmp_path):
        pipe = _fifo(tmp_path / "pipe.jpg")
        writer = _write_later(pipe, b"\xff" * 5000)
        reason, message = _reason(lambda: read_image_file(pipe, max_bytes=1000))
        writer.join(5)
        assert reason == "too_large" and "1000 byte limit" in message

    @pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
    def test_a_device_is_refused_not_read(self, device):
        if not os.path.exists(device):
            pytest.skip(f"no {device} here")
        reason, message = _reason(lambda: load_image(device))
        assert reason == "unreadable" and "character device" in message

    def test_a_link_to_a_device_is_refused_too(self, tmp_path):
        link = tmp_path / "zero.jpg"
        link.symlink_to("/dev/zero")
        assert _reason(lambda: load_image(link))[0] == "unreadable"

    def test_a_socket_is_refused(self, tmp_path):
        path = tmp_path / "s.jpg"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            reason, message = _reason(lambda: load_image(path))
        assert reason == "unreadable" and "socket" in message

    def test_a_directory_is_refused(self, tmp_path):
        (tmp_path / "folder.jpg").mkdir()
        assert _reason(lambda: load_image(tmp_path / "folder.jpg"))[0] == "unreadable"

    def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(self, tmp_path, jpeg, monkeypatch):
        path = tmp_path / "face.jpg"
        path.write_bytes(jpeg)
        assert load_image(path, max_bytes=len(jpeg)).pixels.shape == (512, 512, 3)  # the limit itself is allowed
        sparse = tmp_path / "sparse.jpg"
        with open(sparse, "wb") as stream:
            stream.truncate(decode.DEFAULT_MAX_FILE_BYTES + 1)  # sparse: no disk used; reading it would take 1 GiB
        reads = []
        monkeypatch.setattr(decode.os, "fdopen", lambda *a, **k: reads.append(a) or open(os.devnull, "rb"))
        reason, message = _reason(lambda: load_image(sparse))
        assert reason == "too_large" and "byte limit" in message and not reads
        assert _reason(lambda: load_image(path, max_bytes=len(jpeg) - 1))[0] == "too_large"


class TestFolderDiscovery:
    def test_sniffing_never_opens_a_pipe(self, tmp_path, jpeg):
        pipe = _fifo(tmp_path / "no_suffix")
        assert looks_like_image(pipe) is False
        assert walk_files(tmp_path, frozenset({".jpg"}), sniff=True) == []
        writer = _write_later(pipe, jpeg)  # the pipe still holds every byte for a real read
        assert read_image_file(pipe) == jpeg
        writer.join(5)

    def test_a_pipe_with_an_image_suffix_is_listed(self, tmp_path):
        pipe = _fifo(tmp_path / "pipe.jpg")
        assert list_files(tmp_path, frozenset({".jpg"})) == [pipe]
        assert walk_files(tmp_path, frozenset({".jpg"})) == [pipe]


class TestEntryPoints:
    def test_curation_gives_pipes_and_devices_their_rows(self, tmp_path, one_torch_thread):
        Image.fromarray(astronaut()).save(tmp_path / "face.png")
        (tmp_path / "zero.jpg").symlink_to("/dev/zero")
        paths = [_fifo(tmp_path / "pipe.jpg"), tmp_path / "zero.jpg", tmp_path / "face.png"]
        records = [SourceRecord(source="test", path=str(path), subject=f"s{i}", label="spoof", species="print")
                   for i, path in enumerate(paths)]
        rows = [outcome.row for outcome in process_chunk(records, CurationSettings(kind="spoof", crop_size=32))]
        assert [row["reject_reason"] for row in rows] == ["empty_file", "unreadable", ""]

    def test_predict_inputs_give_pipes_devices_and_big_files_their_rows(self, tmp_path, jpeg):
        folder = tmp_path / "inputs"
        (folder / "empty").mkdir(parents=True)
        (folder / "face.jpg").write_bytes(jpeg)
        _fifo(folder / "pipe.jpg")
        _fifo(folder / "pipe.mp4")
        _fifo(folder / "pipe_without_suffix")  # neither an image nor a video by name; never sniffed
        files, skipped = find_input_files([folder, Path("/dev/zero"), folder / "empty"])
        items = list(read_inputs(files, frames=2))
        reasons = {Path(path).name: reason for path, _, _, reason, _ in items}
        assert reasons == {"face.jpg": "", "pipe.jpg": "empty_file", "pipe.mp4": "video_unreadable",
                           "zero": "unreadable"}
        assert next(data for path, _, data, _, _ in items if path.endswith("face.jpg")) == jpeg
        details = {Path(path).name: detail for path, _, _, _, detail in items}
        assert details["face.jpg"] == "" and "pipe.mp4" in details["pipe.mp4"] and "not a regular file" in details[
            "pipe.mp4"]
        assert all(details[name] for name in ("pipe.jpg", "zero"))  # each failure says what happened
        assert skipped == [(folder, 1), (folder / "empty", 0)]

    def test_the_video_sampler_refuses_a_pipe_at_once(self, tmp_path):
        with pytest.raises(VideoError) as caught:
            sample_frames(_fifo(tmp_path / "clip.mp4"), 3)
        assert caught.value.reason == "video_unreadable" and "not a regular file" in str(caught.value)


def test_predict_reads_one_file_at_a_time(tmp_path, jpeg, monkeypatch):
    """Files are read as the caller asks for them, so a folder of any size never sits in memory at once."""
    from liveness.data import inputs

    for index in range(3):
        (tmp_path / f"{index}.jpg").write_bytes(jpeg)
    reads = []
    monkeypatch.setattr(inputs, "read_image_file", lambda path: reads.append(path.name) or jpeg)
    files, _ = find_input_files([tmp_path])
    assert reads == []  # listing reads nothing
    items = read_inputs(files, frames=1)
    next(items)
    assert reads == ["0.jpg"]
    assert [Path(path).name for path, *_ in items] == ["1.jpg", "2.jpg"] and reads == ["0.jpg", "1.jpg", "2.jpg"]
