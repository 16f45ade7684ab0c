import json
import os
import re
from pathlib import Path

import pytest

from liveness.data.records import LIVE, SPECIES_LIVE, SPOOF, SourceRecord
from liveness.data.sources import ADAPTERS, SourceError, iter_records
from tests.fixtures import databases
from tests.fixtures.databases import (
    CELEBA_SPOOF_SCALED_BOX,
    celeba_spoof_labels,
    write_image,
    write_lines,
    write_video,
)

BUILDERS = {
    "folder": databases.make_folder,
    "celeba": databases.make_celeba,
    "ffhq": databases.make_ffhq,
    "lfw": databases.make_lfw,
    "vggface2": databases.make_vggface2,
    "casia_webface": databases.make_casia_webface,
    "celeba_spoof": databases.make_celeba_spoof,
    "oulu_npu": databases.make_oulu_npu,
    "replay_attack": databases.make_replay_attack,
    "casia_fasd": databases.make_casia_fasd,
    "msu_mfsd": databases.make_msu_mfsd,
    "siw": databases.make_siw,
    "csv_manifest": databases.make_csv_manifest,
}


def fields(record: SourceRecord) -> dict:
    """The record fields the fixtures declare (see ``tests.fixtures.databases.expect``)."""
    return {
        "label": record.label,
        "species": record.species,
        "subject": record.subject,
        "split_hint": record.split_hint,
        "is_video": record.is_video,
        "landmarks": record.landmarks,
        "box": record.box,
        "extra": record.extra,
    }


def read(source: str, root: Path, **options) -> dict[str, SourceRecord]:
    return {record.path: record for record in iter_records(source, root, **options)}


def rewrite_line(path: Path, number: int, text: str) -> None:
    """Replace line ``number`` (1-based) of a text file."""
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    write_lines(path, lines)


def file_line(path: Path, number: int) -> str:
    """The ``file:line`` prefix an error must carry, as a regex."""
    return re.escape(f"{path}:{number}:")


class TestEveryAdapter:
    def test_every_adapter_has_a_fixture(self):
        assert set(BUILDERS) == set(ADAPTERS)

    @pytest.mark.parametrize("source", sorted(BUILDERS))
    def test_yields_exactly_the_expected_records(self, source, tmp_path):
        database = BUILDERS[source](tmp_path / source)
        records = list(iter_records(source, database.root))
        assert len(records) == len(database.records)
        assert {record.path: fields(record) for record in records} == database.records
        assert {record.source for record in records} == {source}

    @pytest.mark.parametrize("source", sorted(BUILDERS))
    def test_order_is_sorted_by_path(self, source, tmp_path):
        database = BUILDERS[source](tmp_path / source)
        paths = [record.path for record in iter_records(source, database.root)]
        assert paths == sorted(paths)

    @pytest.mark.parametrize("source", sorted(BUILDERS))
    def test_missing_root_is_named(self, source, tmp_path):
        with pytest.raises(SourceError, match=re.escape(str(tmp_path / "absent"))):
            list(iter_records(source, tmp_path / "absent"))


class TestIterRecords:
    def test_unknown_source_lists_the_valid_names(self, tmp_path):
        valid = "casia_fasd, casia_webface, celeba, celeba_spoof, csv_manifest, ffhq, folder, lfw, msu_mfsd"
        with pytest.raises(SourceError, match=f"unknown source 'celebA'; valid sources: {valid}, oulu_npu"):
            iter_records("celebA", tmp_path)

    def test_unknown_option_lists_the_accepted_ones(self, tmp_path):
        with pytest.raises(SourceError, match=r"'celeba' has no option protocol; its options: use_landmarks"):
            iter_records("celeba", tmp_path, protocol="1")

    def test_adapter_without_options_says_so(self, tmp_path):
        with pytest.raises(SourceError, match=r"its options: none"):
            iter_records("lfw", tmp_path, use_landmarks=False)

    def test_source_error_is_a_value_error(self):
        assert issubclass(SourceError, ValueError)


class TestFolder:
    def test_subject_is_the_parent_folder_and_unknown_at_the_root(self, tmp_path):
        database = databases.make_folder(tmp_path)
        records = read("folder", database.root)
        assert records[str(tmp_path / "top.jpg")].subject == "unknown"
        assert records[str(tmp_path / "bob" / "2019" / "5.webp")].subject == "2019"

    def test_skips_hidden_files_non_images_and_symlink_loops(self, tmp_path):
        databases.make_folder(tmp_path)
        paths = set(read("folder", tmp_path))
        assert not any("/." in path or "loop" in path or path.endswith(".txt") for path in paths)

    def test_root_that_is_a_file_is_rejected(self, tmp_path):
        path = write_image(tmp_path / "a.jpg")
        with pytest.raises(SourceError, match="folder of face photos"):
            list(iter_records("folder", path))


class TestCelebA:
    def test_official_subfolders(self, tmp_path):
        database = databases.make_celeba(tmp_path, official=True)
        assert {path: fields(record) for path, record in read("celeba", tmp_path).items()} == database.records

    def test_landmarks_are_five_points_in_file_order(self, tmp_path):
        databases.make_celeba(tmp_path)
        record = read("celeba", tmp_path)[str(tmp_path / "img_align_celeba" / "000001.jpg")]
        assert record.landmarks == ((69, 109), (106, 113), (77, 142), (73, 152), (108, 154))
        assert record.subject == "2880" and record.split_hint == "train"

    def test_image_listed_but_missing_on_disk_is_yielded(self, tmp_path):
        databases.make_celeba(tmp_path)
        missing = tmp_path / "img_align_celeba" / "000004.jpg"
        assert not missing.exists()
        assert read("celeba", tmp_path)[str(missing)].subject == "17"

    def test_landmarks_off_needs_no_landmark_file(self, tmp_path):
        databases.make_celeba(tmp_path)
        (tmp_path / "list_landmarks_align_celeba.txt").unlink()
        records = read("celeba", tmp_path, use_landmarks=False)
        assert len(records) == 4 and all(record.landmarks is None for record in records.values())

    def test_partition_file_is_optional(self, tmp_path):
        databases.make_celeba(tmp_path)
        (tmp_path / "list_eval_partition.txt").unlink()
        assert {record.split_hint for record in read("celeba", tmp_path).values()} == {None}

    @pytest.mark.parametrize("name", ["identity_CelebA.txt", "list_landmarks_align_celeba.txt"])
    def test_missing_label_file_names_it_and_where_it_belongs(self, tmp_path, name):
        databases.make_celeba(tmp_path)
        (tmp_path / name).unlink()
        expected = f"label file {name} not found; expected it at {tmp_path / name} or {tmp_path / 'Anno' / name}"
        with pytest.raises(SourceError, match=re.escape(expected)):
            list(iter_records("celeba", tmp_path))

    def test_missing_image_folder_is_named(self, tmp_path):
        databases.make_celeba(tmp_path)
        (tmp_path / "img_align_celeba").rename(tmp_path / "images")
        with pytest.raises(SourceError, match="image folder img_align_celeba not found"):
            list(iter_records("celeba", tmp_path))

    @pytest.mark.parametrize(
        "name,line,text",
        [
            ("identity_CelebA.txt", 2, "000002.jpg"),
            ("identity_CelebA.txt", 3, "000003.jpg seventeen"),
            ("list_eval_partition.txt", 2, "000002.jpg 3"),
            ("list_landmarks_align_celeba.txt", 1, "four"),
            ("list_landmarks_align_celeba.txt", 2, "lefteye_x lefteye_y"),
            ("list_landmarks_align_celeba.txt", 4, "000002.jpg 69 110 107 112 81 135 70 151 108"),
            ("list_landmarks_align_celeba.txt", 5, "000003.jpg 76 112 104 106 108 128 74 156 98 x"),
        ],
    )
    def test_malformed_line_names_file_and_line(self, tmp_path, name, line, text):
        databases.make_celeba(tmp_path)
        rewrite_line(tmp_path / name, line, text)
        with pytest.raises(SourceError, match=file_line(tmp_path / name, line)):
            list(iter_records("celeba", tmp_path))

    def test_truncated_landmark_file_is_rejected(self, tmp_path):
        databases.make_celeba(tmp_path)
        rewrite_line(tmp_path / "list_landmarks_align_celeba.txt", 1, "5")
        with pytest.raises(SourceError, match="announces 5 images but 4 follow"):
            list(iter_records("celeba", tmp_path))


class TestFfhqLfwCasiaWebface:
    @pytest.mark.parametrize("source,folder", [("ffhq", "images1024x1024"), ("lfw", "lfw")])
    def test_root_may_be_the_image_folder_itself(self, tmp_path, source, folder):
        database = BUILDERS[source](tmp_path)
        assert {path: fields(record) for path, record in read(source, tmp_path / folder).items()} == database.records

    def test_ffhq_image_is_its_own_subject(self, tmp_path):
        databases.make_ffhq(tmp_path)
        assert [record.subject for record in read("ffhq", tmp_path).values()] == ["00000", "00001", "01000"]

    def test_lfw_subject_is_the_person_folder(self, tmp_path):
        databases.make_lfw(tmp_path)
        subjects = {record.subject for record in read("lfw", tmp_path).values()}
        assert subjects == {"Aaron_Eckhart", "George_W_Bush"}

    def test_casia_webface_subject_is_the_id_folder(self, tmp_path):
        databases.make_casia_webface(tmp_path)
        assert sorted({record.subject for record in read("casia_webface", tmp_path).values()}) == ["0000045", "0000099"]


class TestVggFace2:
    def test_box_is_x_y_x_plus_w_y_plus_h(self, tmp_path):
        databases.make_vggface2(tmp_path)
        record = read("vggface2", tmp_path)[str(tmp_path / "train" / "n000002" / "0001_01.jpg")]
        assert record.box == (161, 140, 385, 464)
        assert record.landmarks[0] == (75.8, 110.0) and len(record.landmarks) == 5

    def test_split_without_annotation_files_has_no_box(self, tmp_path):
        databases.make_vggface2(tmp_path)
        record = read("vggface2", tmp_path)[str(tmp_path / "test" / "n000001" / "0001_01.jpg")]
        assert (record.box, record.landmarks, record.split_hint) == (None, None, "test")

    @pytest.mark.parametrize(
        "name,line,text",
        [
            ("loose_bb_train.csv", 1, "NAME,X,Y,W,H"),
            ("loose_bb_train.csv", 3, '"n000002/0002_01",20,30,100'),
            ("loose_landmark_train.csv", 2, '"n000002/0001_01",1,2,3,4,5,6,7,8,9,ten'),
        ],
    )
    def test_malformed_csv_line_names_file_and_line(self, tmp_path, name, line, text):
        databases.make_vggface2(tmp_path)
        path = tmp_path / "bb_landmark" / name
        rewrite_line(path, line, text)
        with pytest.raises(SourceError, match=file_line(path, line)):
            list(iter_records("vggface2", tmp_path))

    def test_root_without_splits_names_them(self, tmp_path):
        with pytest.raises(SourceError, match=r"none of test/, train/ found"):
            list(iter_records("vggface2", tmp_path))


class TestCelebASpoof:
    def path(self, root: Path, key: str) -> str:
        return str(root / key)

    def labels(self, root: Path, split: str = "train") -> Path:
        return root / "metas" / "intra_test" / f"{split}_label.json"

    def edit_labels(self, root: Path, key: str, values) -> None:
        path = self.labels(root, key.split("/")[1])
        labels = json.loads(path.read_text())
        labels[key] = values
        path.write_text(json.dumps(labels))

    def test_box_is_scaled_from_224_to_image_pixels(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        record = read("celeba_spoof", tmp_path)[self.path(tmp_path, "Data/train/4980/live/000001.jpg")]
        assert record.box == CELEBA_SPOOF_SCALED_BOX == (112 / 4, 56 / 2, (112 + 56) / 4, (56 + 112) / 2)

    def test_unreadable_image_has_no_box(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        image = tmp_path / "Data/train/4980/live/000001.jpg"
        image.write_bytes(b"not an image")
        assert read("celeba_spoof", tmp_path)[str(image)].box is None

    @pytest.mark.timeout(60)
    def test_a_named_pipe_in_place_of_an_image_has_no_box_and_does_not_hang(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        image = tmp_path / "Data/train/4980/live/000001.jpg"
        image.unlink()
        os.mkfifo(image)  # reading its header would wait for a writer forever
        assert read("celeba_spoof", tmp_path)[str(image)].box is None

    def test_label_comes_from_the_json_not_the_folder(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        key = "Data/train/4980/live/000001.jpg"
        self.edit_labels(tmp_path, key, celeba_spoof_labels(3))
        record = read("celeba_spoof", tmp_path)[self.path(tmp_path, key)]
        assert (record.label, record.species) == (SPOOF, "print_a4")

    @pytest.mark.parametrize(
        "values,message",
        [
            (celeba_spoof_labels(3)[:43] + [0], "index 43 says live but index 40 says spoof type 3"),
            (celeba_spoof_labels(0)[:43] + [1], "index 43 says spoof but index 40 says spoof type 0"),
            (celeba_spoof_labels(0)[:40], "must be a list of 44 integers"),
            (celeba_spoof_labels(0)[:43] + [[0]], "must be a list of 44 integers"),
            (celeba_spoof_labels(0)[:40] + [11, 0, 0, 1], "spoof type 11"),
        ],
    )
    def test_inconsistent_or_malformed_entry_is_rejected(self, tmp_path, values, message):
        databases.make_celeba_spoof(tmp_path)
        key = "Data/train/4980/spoof/000103.jpg"
        self.edit_labels(tmp_path, key, values)
        with pytest.raises(SourceError, match=re.escape(f"{self.labels(tmp_path)}: entry {key!r}") + ".*" + message):
            list(iter_records("celeba_spoof", tmp_path))

    def test_key_outside_the_data_layout_is_rejected(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        self.edit_labels(tmp_path, "Data/train/4980/000001.jpg", celeba_spoof_labels(0))
        with pytest.raises(SourceError, match="is not a path like Data/train/4980/spoof/000001.jpg"):
            list(iter_records("celeba_spoof", tmp_path))

    def test_invalid_json_names_file_and_line(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        self.labels(tmp_path, "test").write_text('{\n"Data/test/1/live/1.jpg": [0,\n')
        with pytest.raises(SourceError, match=file_line(self.labels(tmp_path, "test"), 3)):
            list(iter_records("celeba_spoof", tmp_path))

    def test_one_label_file_is_enough(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        self.labels(tmp_path, "test").unlink()
        assert {record.split_hint for record in read("celeba_spoof", tmp_path).values()} == {"train"}

    def test_no_label_file_names_both(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        self.labels(tmp_path, "test").unlink()
        self.labels(tmp_path, "train").unlink()
        expected = f"expected {self.labels(tmp_path, 'train')} and/or {self.labels(tmp_path, 'test')}"
        with pytest.raises(SourceError, match=re.escape(expected)):
            list(iter_records("celeba_spoof", tmp_path))

    def test_malformed_box_file_names_it(self, tmp_path):
        databases.make_celeba_spoof(tmp_path)
        box_file = tmp_path / "Data/train/4980/live/000001_BB.txt"
        write_lines(box_file, ["61 45 61"])
        with pytest.raises(SourceError, match=file_line(box_file, 1)):
            list(iter_records("celeba_spoof", tmp_path))


class TestOuluNpu:
    def protocol_file(self, root: Path, name: str = "Train.txt", protocol: str = "Protocol_1") -> Path:
        return root / "Protocols" / protocol / name

    def test_sub_protocol_reads_its_numbered_files(self, tmp_path):
        databases.make_oulu_npu(tmp_path)
        records = list(iter_records("oulu_npu", tmp_path, protocol="3_1"))
        phones = {(record.split_hint, Path(record.path).name[0]) for record in records}
        assert len(records) == 6 and phones == {("train", "2"), ("dev", "1"), ("test", "1")}

    def test_missing_protocol_file_names_it(self, tmp_path):
        databases.make_oulu_npu(tmp_path)
        expected = f"Train.txt not found; expected it at {tmp_path}/Protocols/Protocol_2/Train.txt"
        with pytest.raises(SourceError, match=re.escape(expected)):
            list(iter_records("oulu_npu", tmp_path, protocol="2"))

    def test_protocol_may_be_a_number(self, tmp_path):
        databases.make_oulu_npu(tmp_path)
        assert len(list(iter_records("oulu_npu", tmp_path, protocol=1))) == 14

    @pytest.mark.parametrize("protocol", ["one", "3-1", "3_", "3", "5", "3_7", 31])
    def test_invalid_protocol_is_rejected(self, tmp_path, protocol):
        databases.make_oulu_npu(tmp_path)
        with pytest.raises(SourceError, match=r"not one of 1, 2, 3_1 to 3_6, 4_1 to 4_6; in YAML write '3_1' in"):
            list(iter_records("oulu_npu", tmp_path, protocol=protocol))

    @pytest.mark.parametrize(
        "text,message",
        [("+1,1_1_01_2", r"\+1 disagrees with file code 2"), ("-1,1_1_01_1", "-1 disagrees with file code 1"),
         ("-1,1_1_01_6", "file code 6"), ("+1;1_1_01_1", "expected"), ("1_1_01_1", "expected")],
    )
    def test_bad_line_names_file_and_line(self, tmp_path, text, message):
        databases.make_oulu_npu(tmp_path)
        path = self.protocol_file(tmp_path, "Dev.txt")
        rewrite_line(path, 2, text)
        with pytest.raises(SourceError, match=file_line(path, 2) + ".*" + message):
            list(iter_records("oulu_npu", tmp_path))

    def test_subject_is_the_user_field(self, tmp_path):
        databases.make_oulu_npu(tmp_path)
        subjects = {record.subject for record in read("oulu_npu", tmp_path).values()}
        assert subjects == {"01", "02", "21", "22", "36", "37"}


class TestReplayAttack:
    def test_support_is_recorded_for_attacks(self, tmp_path):
        databases.make_replay_attack(tmp_path)
        supports = {record.extra.get("support") for record in read("replay_attack", tmp_path).values()}
        assert supports == {None, "fixed", "hand"}

    @pytest.mark.parametrize(
        "relative", ["train/attack/fixed/attack_paper_client001_session01.mov", "train/real/real_client001.mov"]
    )
    def test_unreadable_name_is_rejected(self, tmp_path, relative):
        databases.make_replay_attack(tmp_path)
        write_video(tmp_path / relative)
        with pytest.raises(SourceError, match=re.escape(f"cannot read {Path(relative).name}")):
            list(iter_records("replay_attack", tmp_path))


class TestCasiaFasd:
    def test_train_and_test_subjects_stay_distinct(self, tmp_path):
        databases.make_casia_fasd(tmp_path)
        subjects = {record.subject for record in read("casia_fasd", tmp_path).values()}
        assert subjects == {"train_1", "test_1", "test_2"}

    def test_unknown_file_name_is_rejected(self, tmp_path):
        databases.make_casia_fasd(tmp_path)
        write_video(tmp_path / "train_release" / "1" / "HR_5.avi")
        with pytest.raises(SourceError, match="unknown video .*HR_5.avi"):
            list(iter_records("casia_fasd", tmp_path))


class TestMsuMfsd:
    def test_real_and_attack_folders_at_the_root(self, tmp_path):
        database = databases.make_msu_mfsd(tmp_path, scene_folder=False)
        assert {path: fields(record) for path, record in read("msu_mfsd", tmp_path).items()} == database.records

    def test_without_sub_lists_there_is_no_split(self, tmp_path):
        databases.make_msu_mfsd(tmp_path)
        (tmp_path / "train_sub_list.txt").unlink()
        (tmp_path / "test_sub_list.txt").unlink()
        assert {record.split_hint for record in read("msu_mfsd", tmp_path).values()} == {None}

    @pytest.mark.parametrize("text,message", [("client2", "expected a client number"), ("2", "in both")])
    def test_bad_sub_list_line_names_file_and_line(self, tmp_path, text, message):
        databases.make_msu_mfsd(tmp_path)
        path = write_lines(tmp_path / "test_sub_list.txt", ["3", text])
        with pytest.raises(SourceError, match=file_line(path, 2) + ".*" + message):
            list(iter_records("msu_mfsd", tmp_path))

    def test_attack_in_the_real_folder_is_rejected(self, tmp_path):
        databases.make_msu_mfsd(tmp_path)
        write_video(tmp_path / "scene01" / "real" / "attack_client002_android_SD_ipad_video_scene01.mp4")
        with pytest.raises(SourceError, match="expected names like real_client001"):
            list(iter_records("msu_mfsd", tmp_path))


class TestSiw:
    @pytest.mark.parametrize(
        "relative",
        ["Train/live/003/003-1-2-1-2.mov", "Train/spoof/003/003-1-1-1-2.mov", "Test/spoof/090/090-1-4-1-1.mov"],
    )
    def test_type_field_must_match_the_folder(self, tmp_path, relative):
        databases.make_siw(tmp_path)
        write_video(tmp_path / relative)
        with pytest.raises(SourceError, match=re.escape(f"{tmp_path / relative} has Type")):
            list(iter_records("siw", tmp_path))

    def test_face_files_are_not_records(self, tmp_path):
        databases.make_siw(tmp_path)
        assert all(path.endswith(".mov") for path in read("siw", tmp_path))


class TestCsvManifest:
    def manifest(self, root: Path, *rows: str, header: str = "path,label,attack_type,subject,split") -> Path:
        return write_lines(root / "manifest.csv", [header, *rows])

    @pytest.mark.parametrize(
        "label,attack,expected",
        [("live", "", LIVE), ("LIVE", "live", LIVE), ("0", "", LIVE), ("spoof", "print", SPOOF), ("1", "mask", SPOOF)],
    )
    def test_label_spellings(self, tmp_path, label, attack, expected):
        (record,) = iter_records("csv_manifest", self.manifest(tmp_path, f"a.jpg,{label},{attack},s1,"))
        assert record.label == expected
        assert record.species == (SPECIES_LIVE if expected == LIVE else attack)

    def test_split_column_is_optional_and_absolute_paths_stay(self, tmp_path):
        absolute = tmp_path / "elsewhere" / "clip.MOV"
        path = self.manifest(tmp_path, f"{absolute},spoof,replay,s1", header="path,label,attack_type,subject")
        (record,) = iter_records("csv_manifest", path)
        assert (record.path, record.split_hint, record.is_video) == (str(absolute), None, True)

    def test_missing_column_is_named(self, tmp_path):
        path = self.manifest(tmp_path, "a.jpg,live,s1", header="path,label,subject")
        with pytest.raises(SourceError, match=file_line(path, 1) + " header lacks attack_type"):
            list(iter_records("csv_manifest", path))

    @pytest.mark.parametrize(
        "row,message",
        [
            ("a.jpg,real,,s1,", "label must be live, spoof, 0 or 1"),
            ("a.jpg,live,print,s1,", "a live row needs an empty attack_type"),
            ("a.jpg,spoof,,s1,", "a spoof row needs an attack_type"),
            ("a.jpg,spoof,live,s1,", "a spoof row needs an attack_type"),
            ("a.jpg,live,,,", "path and subject must not be empty"),
            ("a.jpg,live,,s1", "number of fields"),
            ("b.jpg,live,,s1,train", "listed twice"),
        ],
    )
    def test_bad_row_names_file_and_line(self, tmp_path, row, message):
        path = self.manifest(tmp_path, "b.jpg,live,,s1,train", row)
        with pytest.raises(SourceError, match=file_line(path, 3) + ".*" + message):
            list(iter_records("csv_manifest", path))

    def test_missing_manifest_says_what_to_give(self, tmp_path):
        with pytest.raises(SourceError, match="give the path of a CSV headed path,label,attack_type,subject"):
            list(iter_records("csv_manifest", tmp_path / "manifest.csv"))
