import struct

import cv2
import numpy as np
import pytest

from liveness.data.records import SPECIES_REPLAY, SPOOF, SourceRecord
from liveness.data.video import VideoError, frame_records, sample_frames
from tests.fixtures.databases import frame_color, write_video


class TestSampleFrames:
    @pytest.mark.parametrize(
        "frames,count,indices",
        [
            (10, 4, [0, 3, 6, 9]),
            (10, 1, [0]),
            (10, 2, [0, 9]),
            (9, 3, [0, 4, 8]),
            (3, 5, [0, 1, 2]),
            (5, 5, [0, 1, 2, 3, 4]),
        ],
    )
    def test_indices_are_evenly_spaced_and_unique(self, tmp_path, frames, count, indices):
        path = write_video(tmp_path / "clip.avi", frames=frames)
        assert [index for index, _ in sample_frames(path, count)] == indices

    @pytest.mark.parametrize("suffix", [".avi", ".mov", ".mp4"])
    def test_frames_are_rgb_uint8_and_match_their_index(self, tmp_path, suffix):
        path = write_video(tmp_path / f"clip{suffix}", frames=10, size=32)
        for index, frame in sample_frames(str(path), 4):
            assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
            assert np.abs(frame.reshape(-1, 3).mean(0) - frame_color(index)).max() < 6

    def test_unreliable_frame_count_falls_back_to_reading(self, tmp_path, monkeypatch):
        path = write_video(tmp_path / "clip.avi", frames=6)
        original = cv2.VideoCapture.get

        def overstated(capture, prop):
            return 50.0 if prop == cv2.CAP_PROP_FRAME_COUNT else original(capture, prop)

        monkeypatch.setattr(cv2.VideoCapture, "get", overstated)
        assert [index for index, _ in sample_frames(path, 3)] == [0, 2, 5]

    def test_a_phone_video_stored_sideways_comes_out_upright(self, tmp_path):
        """Phones record portrait video as landscape frames plus a rotation in the track header (tkhd's
        display matrix); the frames must come out as shown, or every face lies on its side (no_face)."""
        path = tmp_path / "portrait.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 32))
        marked = np.zeros((32, 48, 3), np.uint8)
        marked[:, :8] = 255  # a white band down the left edge, to see where it ends up
        for _ in range(4):
            writer.write(marked)
        writer.release()
        data = bytearray(path.read_bytes())
        matrix = data.index(b"tkhd") + 4 + 4 + 4 * 5 + 8 + 8  # version 0: flags, times, ids, duration, layer...
        assert struct.unpack(">9i", data[matrix : matrix + 36])[:2] == (65536, 0)  # the identity, as written
        data[matrix : matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # 90 degrees
        path.write_bytes(bytes(data))
        frames = sample_frames(path, 2)
        assert [frame.shape for _, frame in frames] == [(48, 32, 3)] * 2
        rows = frames[0][1].mean(axis=(1, 2))  # the band now runs along the top or bottom edge, across the frame
        assert max(rows[:6].mean(), rows[-6:].mean()) > 200 and rows[12:36].mean() < 40, rows.round()

    def test_missing_video(self, tmp_path):
        with pytest.raises(VideoError, match="not found") as caught:
            sample_frames(tmp_path / "absent.avi", 3)
        assert caught.value.reason == "video_missing"

    def test_garbage_bytes_are_unreadable(self, tmp_path):
        path = tmp_path / "broken.avi"
        path.write_bytes(b"\x00garbage, not a video" * 64)
        with pytest.raises(VideoError, match="cannot be opened") as caught:
            sample_frames(path, 3)
        assert caught.value.reason == "video_unreadable"

    def test_zero_frame_video(self, tmp_path):
        path = write_video(tmp_path / "empty.avi", frames=0)
        with pytest.raises(VideoError, match="no decodable frame") as caught:
            sample_frames(path, 3)
        assert caught.value.reason == "video_no_frames"

    def test_video_error_is_a_value_error(self):
        assert issubclass(VideoError, ValueError)

    def test_count_must_be_positive(self, tmp_path):
        with pytest.raises(ValueError, match="count must be at least 1"):
            sample_frames(write_video(tmp_path / "clip.avi"), 0)


class TestFrameRecords:
    def record(self, is_video: bool = True) -> SourceRecord:
        return SourceRecord("siw", "Train/spoof/003/003-1-3-1-1.mov", "003", SPOOF, SPECIES_REPLAY, "train", is_video)

    def test_one_record_per_index_keeping_every_field(self):
        video = self.record()
        frames = frame_records(video, [0, 7])
        assert [frame.frame_index for frame in frames] == [0, 7]
        assert [frame.record_id for frame in frames] == [f"{video.path}#0", f"{video.path}#7"]
        assert all(frame.is_video and frame.subject == "003" and frame.species == SPECIES_REPLAY for frame in frames)

    def test_image_record_has_no_frames(self):
        with pytest.raises(ValueError, match="image record"):
            frame_records(self.record(is_video=False), [0])
