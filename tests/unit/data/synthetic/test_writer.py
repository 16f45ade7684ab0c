"""The demo dataset on disk: CelebA and CelebA-Spoof layouts, SYNTHETIC markers, determinism, idempotence."""

import hashlib
import inspect
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from liveness.data.sources.spoof import iter_celeba_spoof
from liveness.data.synthetic import writer
from liveness.data.synthetic.faces import face_box
from liveness.data.synthetic.writer import LANDMARK_HEADER, MARKER, generate_demo_dataset, read_marker

SMALL = dict(identities_live=3, images_per_identity=2, identities_spoof=2, live_per_spoof_subject=1,
             attacks_per_species=1, size=64)
SPOOF_TYPES = {3, 4, 6, 7}  # print_a4, mask_face (paper mask), mask_region (cut photo), replay_pc


def _hashes(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "synthetic"
    return out, generate_demo_dataset(out, seed=0, **SMALL)


class TestCelebALayout:
    def test_images_are_numbered_6_digit_jpegs(self, demo):
        out, summary = demo
        names = sorted(path.name for path in (out / "celeba" / "img_align_celeba").iterdir())
        assert names == [f"{n:06d}.jpg" for n in range(1, 7)] and summary["celeba"]["images"] == 6
        image = cv2.imread(str(out / "celeba" / "img_align_celeba" / "000001.jpg"))
        assert image.shape == (64, 64, 3)

    def test_identity_file(self, demo):
        out, _ = demo
        rows = _rows(out / "celeba" / "identity_CelebA.txt")
        assert rows == [[f"{n:06d}.jpg", str((n - 1) // 2 + 1)] for n in range(1, 7)]

    def test_landmark_file(self, demo):
        out, _ = demo
        lines = (out / "celeba" / "list_landmarks_align_celeba.txt").read_text().splitlines()
        assert lines[0] == "6" and lines[1] == LANDMARK_HEADER and len(lines) == 8
        assert re.fullmatch(r"000001\.jpg(\s+\d+){10}", lines[2])
        for line in lines[2:]:
            values = np.array(line.split()[1:], int).reshape(5, 2)
            assert np.all((values >= 0) & (values < 64))
            assert values[0, 0] < values[1, 0] and values[3, 0] < values[4, 0]
            assert values[:2, 1].max() < values[2, 1] < values[3:, 1].min()

    def test_partition_file_splits_by_identity(self, demo):
        out, _ = demo
        rows = _rows(out / "celeba" / "list_eval_partition.txt")
        assert [name for name, _ in rows] == [f"{n:06d}.jpg" for n in range(1, 7)]
        identity = dict(_rows(out / "celeba" / "identity_CelebA.txt"))
        split_of = {}
        for name, split in rows:
            assert split in {"0", "1", "2"}
            assert split_of.setdefault(identity[name], split) == split


class TestCelebASpoofLayout:
    def test_labels_cover_every_image_with_44_ints(self, demo):
        out, summary = demo
        root = out / "celeba_spoof"
        labels = json.loads((root / "metas" / "intra_test" / "test_label.json").read_text())
        assert json.loads((root / "metas" / "intra_test" / "train_label.json").read_text()) == {}
        images = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.jpg"))
        assert sorted(labels) == images and len(images) == 2 * (1 + 4)
        assert not list(root.rglob("*.png"))
        for key, label in labels.items():
            assert re.fullmatch(r"Data/test/\d+/(live|spoof)/\d{6}\.jpg", key)
            assert len(label) == 44 and all(isinstance(v, int) for v in label)
            assert all(v == 0 for i, v in enumerate(label) if i not in (40, 43))
            if "/live/" in key:
                assert label[40] == 0 and label[43] == 0
            else:
                assert label[40] in SPOOF_TYPES and label[43] == 1
        per_type = [label[40] for label in labels.values()]
        assert {t: per_type.count(t) for t in SPOOF_TYPES} == {3: 2, 4: 2, 6: 2, 7: 2}
        assert summary["celeba_spoof"]["species"] == {"print_a4": 2, "replay_pc": 2, "mask_region": 2, "mask_face": 2}
        assert summary["celeba_spoof"] | {"root": None} == {"root": None, "subjects": 2, "live": 2, "spoof": 8,
                                                             "species": summary["celeba_spoof"]["species"]}

    def test_every_image_has_a_box_in_224_coordinates(self, demo):
        out, _ = demo
        for image in (out / "celeba_spoof").rglob("*.jpg"):
            fields = (image.parent / f"{image.stem}_BB.txt").read_text().split()
            x, y, w, h = (int(v) for v in fields[:4])
            assert 0 <= x and 0 <= y and w > 20 and h > 20 and x + w <= 224 and y + h <= 224
            assert float(fields[4]) == pytest.approx(0.99)
            assert cv2.imread(str(image)).shape == (64, 64, 3)

    def test_spoof_subjects_are_disjoint_from_live_identities(self, demo):
        out, _ = demo
        live = {identity for _, identity in _rows(out / "celeba" / "identity_CelebA.txt")}
        spoof = {path.name for path in (out / "celeba_spoof" / "Data" / "test").iterdir()}
        assert live == {"1", "2", "3"} and spoof == {"4", "5"}

    def test_the_celeba_spoof_adapter_reads_it(self, demo):
        """The real adapter takes the .jpg images, their _BB.txt boxes and the mask species as it finds them."""
        out, _ = demo
        records = list(iter_celeba_spoof(out / "celeba_spoof"))
        assert len(records) == 10 and all(record.box is not None for record in records)
        species = sorted(record.species for record in records)
        assert species == sorted(["live"] * 2 + ["print_a4", "replay_pc", "mask_region", "mask_face"] * 2)
        for record in records:
            assert record.path.endswith(".jpg") and ("/live/" in record.path) == (record.species == "live")
            x1, y1, x2, y2 = record.box
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64


def _jpeg_settings(data: bytes) -> tuple:
    """What the encoder call decides: format, size, mode, chroma subsampling and quantisation tables."""
    with Image.open(io.BytesIO(data)) as image:
        return (image.format, image.size, image.mode, JpegImagePlugin.get_sampling(image),
                {index: list(table) for index, table in image.quantization.items()})


def test_both_databases_share_one_format_quality_and_size(demo):
    """CelebA images, CelebA-Spoof live captures and attacks: the same JPEG encoding (quality 95), same size."""
    out, _ = demo
    celeba = sorted((out / "celeba" / "img_align_celeba").glob("*.jpg"))
    spoof_live = sorted((out / "celeba_spoof").glob("Data/test/*/live/*.jpg"))
    attacks = sorted((out / "celeba_spoof").glob("Data/test/*/spoof/*.jpg"))
    assert len(celeba) == 6 and len(spoof_live) == 2 and len(attacks) == 8
    _, quality_95 = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    reference = _jpeg_settings(quality_95.tobytes())
    assert reference[:3] == ("JPEG", (64, 64), "RGB")
    for path in celeba + spoof_live + attacks:
        assert _jpeg_settings(path.read_bytes()) == reference, path


def test_live_captures_of_both_databases_are_one_process(tmp_path, monkeypatch):
    """Given the same stream key, a CelebA-Spoof live capture is byte for byte the CelebA image.

    The spoof subjects are other identities and draw from another stream; with the stream made the same and
    the identity indices lined up (no live identities before the spoof ones), nothing else may differ: not
    the pose, background or light draws, the camera, the size, nor the encoder.
    """
    params = dict(images_per_identity=2, live_per_spoof_subject=2, attacks_per_species=0, size=64)
    generate_demo_dataset(tmp_path / "live", seed=3, identities_live=2, identities_spoof=0, **params)
    monkeypatch.setattr(writer, "_STREAM_SPOOF_LIVE", writer._STREAM_LIVE)
    generate_demo_dataset(tmp_path / "spoof", seed=3, identities_live=0, identities_spoof=2, **params)
    celeba = sorted((tmp_path / "live" / "celeba" / "img_align_celeba").glob("*.jpg"))
    spoof_live = sorted((tmp_path / "spoof" / "celeba_spoof").glob("Data/test/*/live/*.jpg"))
    assert len(celeba) == len(spoof_live) == 4
    assert [path.read_bytes() for path in celeba] == [path.read_bytes() for path in spoof_live]
    # and the box CelebA-Spoof ships is the face box of the landmarks CelebA ships (to their rounding)
    rows = (tmp_path / "live" / "celeba" / "list_landmarks_align_celeba.txt").read_text().splitlines()[2:]
    for row, image in zip(rows, spoof_live):
        x, y, w, h = (int(v) for v in (image.parent / f"{image.stem}_BB.txt").read_text().split()[:4])
        expected = np.array(face_box(np.array(row.split()[1:], float).reshape(5, 2))) * 224 / 64
        assert np.allclose((x, y, x + w, y + h), expected, atol=5)


def test_every_root_is_marked_synthetic(demo):
    out, summary = demo
    for root in (out, out / "celeba", out / "celeba_spoof"):
        text = (root / MARKER).read_text()
        assert text.splitlines()[0] == "SYNTHETIC"
        expected = {**SMALL, "seed": 0, "generator_version": writer.GENERATOR_VERSION}
        assert read_marker(root) == summary["params"] == expected
        assert "paper face mask" in text
    assert summary["synthetic"] is True and summary["images"] == 6 + 10


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    out, _ = demo
    again = tmp_path / "again"
    generate_demo_dataset(again, seed=0, **SMALL)
    assert _hashes(again) == _hashes(out)
    other = tmp_path / "other"
    generate_demo_dataset(other, seed=1, **SMALL)
    differing = [name for name, digest in _hashes(other).items() if _hashes(out).get(name) != digest]
    assert len(differing) > 20


def test_a_process_pool_writes_the_same_bytes(demo, tmp_path):
    out, summary = demo
    pooled = generate_demo_dataset(tmp_path / "pooled", seed=0, workers=2, **SMALL)
    assert _hashes(tmp_path / "pooled") == _hashes(out)
    assert pooled["images"] == summary["images"] and pooled["params"] == summary["params"]  # workers is no param
    assert generate_demo_dataset(tmp_path / "pooled", seed=0, workers=2, **SMALL)["skipped"] is True


def test_identity_images_do_not_depend_on_the_identity_count(tmp_path):
    params = dict(SMALL, identities_spoof=0, images_per_identity=1)
    generate_demo_dataset(tmp_path / "one", seed=0, **dict(params, identities_live=1))
    generate_demo_dataset(tmp_path / "two", seed=0, **dict(params, identities_live=2))
    first = "celeba/img_align_celeba/000001.jpg"
    assert (tmp_path / "one" / first).read_bytes() == (tmp_path / "two" / first).read_bytes()


def test_rerun_is_a_no_op_and_changed_params_regenerate(demo, tmp_path):
    out = tmp_path / "demo"
    generate_demo_dataset(out, seed=0, **SMALL)
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    assert generate_demo_dataset(out, seed=0, **SMALL)["skipped"] is True
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == stamps
    summary = generate_demo_dataset(out, seed=0, **dict(SMALL, attacks_per_species=2))
    assert summary["skipped"] is False and summary["celeba_spoof"]["spoof"] == 16
    assert read_marker(out)["attacks_per_species"] == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["demo"]  # no staging or stale folder left


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "real.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="SYNTHETIC.txt"):
        generate_demo_dataset(out, **SMALL)
    assert (out / "real.jpg").read_bytes() == b"not ours"


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_attack(*args):
        raise RuntimeError("attack failed")

    monkeypatch.setattr(writer, "ATTACK_SPECIES", ((3, broken_attack),))
    with pytest.raises(RuntimeError, match="attack failed"):
        generate_demo_dataset(tmp_path / "demo", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_params(tmp_path):
    with pytest.raises(ValueError, match="identities_live"):
        generate_demo_dataset(tmp_path / "x", identities_live=-1)
    with pytest.raises(ValueError, match="size"):
        generate_demo_dataset(tmp_path / "x", size=16)
    with pytest.raises(ValueError, match="workers"):
        generate_demo_dataset(tmp_path / "x", workers=0)


def test_defaults_give_a_small_demo_set():
    defaults = {name: p.default for name, p in inspect.signature(generate_demo_dataset).parameters.items()
                if p.default is not inspect.Parameter.empty}
    per_spoof_subject = defaults["live_per_spoof_subject"] + 4 * defaults["attacks_per_species"]
    images = defaults["identities_live"] * defaults["images_per_identity"] + defaults["identities_spoof"] * per_spoof_subject
    assert 200 <= images <= 1000 and defaults["size"] == 128 and defaults["progress"] is False
    assert defaults["workers"] == 1
