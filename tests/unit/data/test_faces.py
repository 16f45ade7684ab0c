"""MTCNN detection, alignment and context crops on a real photo (scikit-image's astronaut)."""

import cv2
import numpy as np
import pytest
from skimage import data

from liveness.data.faces import REFINE_SLICE, Face, FaceDetector, _scaled_template, align_and_crop, choose_face


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector("cpu")


@pytest.fixture(scope="module")
def coarse_first():
    return FaceDetector("cpu", search="coarse_first")


@pytest.fixture(scope="module")
def full_search():
    return FaceDetector("cpu", search="full")


@pytest.fixture(scope="module")
def astronaut_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


class TestDetection:
    def test_finds_the_astronaut_with_landmarks(self, astronaut_face):
        x1, y1, x2, y2 = astronaut_face.box
        assert astronaut_face.probability > 0.99
        assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200
        left_eye, right_eye, nose, mouth_left, mouth_right = astronaut_face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert left_eye[1] < nose[1] < mouth_left[1]

    def test_no_face_gives_an_empty_list(self, detector):
        assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []

    def test_large_images_are_detected_downscaled_and_mapped_back(self, detector, astronaut, astronaut_face):
        big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
        (face,) = detector.detect(big)
        np.testing.assert_allclose(np.array(face.box) / 3, astronaut_face.box, atol=6)

    def test_batch_of_mixed_sizes(self, detector, astronaut):
        small = cv2.resize(astronaut, (256, 256))
        results = detector.detect_batch([astronaut, small, astronaut])
        assert [len(faces) for faces in results] == [1, 1, 1]


class TestChooseFace:
    def _face(self, side):
        return Face((0.0, 0.0, float(side), float(side)), 0.99, None)

    def test_no_face(self):
        assert choose_face([]) == (None, "no_face")

    def test_reject_policy(self):
        assert choose_face([self._face(100), self._face(20)], "reject") == (None, "multiple_faces")

    def test_largest_when_it_dominates(self):
        big = self._face(100)
        assert choose_face([self._face(20), big], "largest", dominance=2.0) == (big, None)

    def test_largest_refused_when_faces_are_alike(self):
        assert choose_face([self._face(100), self._face(90)], "largest", dominance=2.0) == (None, "multiple_faces")


class TestAlignAndCrop:
    def test_landmarks_land_on_the_template(self, astronaut, astronaut_face):
        crop = align_and_crop(astronaut, astronaut_face, size=128, context=2.0)
        assert crop.image.shape == (128, 128, 3) and crop.image.dtype == np.uint8
        np.testing.assert_allclose(crop.landmarks, _scaled_template(128, 2.0), atol=4)

    def test_context_keeps_background(self, astronaut, astronaut_face):
        tight = align_and_crop(astronaut, astronaut_face, size=128, context=1.0)
        wide = align_and_crop(astronaut, astronaut_face, size=128, context=2.0)
        eye_distance = lambda c: np.linalg.norm(c.landmarks[1] - c.landmarks[0])
        assert eye_distance(tight) == pytest.approx(2 * eye_distance(wide), rel=0.02)

    def test_rotation_is_undone(self, astronaut, astronaut_face, detector):
        upright = align_and_crop(astronaut, astronaut_face, 112, 2.0).image.astype(float)
        rotation = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
        rotated = cv2.warpAffine(astronaut, rotation, (512, 512), borderMode=cv2.BORDER_REFLECT)
        (face,) = detector.detect(rotated)
        realigned = align_and_crop(rotated, face, 112, 2.0).image.astype(float)
        centre = slice(28, 84)
        assert np.abs(upright[centre, centre] - realigned[centre, centre]).mean() < 20

    def test_padding_is_measured(self, astronaut):
        centred = Face((206.0, 206.0, 306.0, 306.0), 1.0, None)
        corner = Face((0.0, 0.0, 100.0, 100.0), 1.0, None)
        assert align_and_crop(astronaut, centred, 64, 2.0).padded_fraction == 0.0
        # the corner box with context 2 spans [-50, 150]^2: 1 - 150^2 / 200^2 of it lies outside the photo
        assert align_and_crop(astronaut, corner, 64, 2.0).padded_fraction == pytest.approx(0.4375, abs=0.02)

    def test_box_only_crop_is_centred_on_the_box(self, astronaut):
        face = Face((200.0, 100.0, 300.0, 200.0), 1.0, None)
        crop = align_and_crop(astronaut, face, 100, 1.0)
        np.testing.assert_allclose(crop.image.astype(float), astronaut[100:200, 200:300].astype(float), atol=2)
        assert crop.landmarks is None


class TestDetectionCopy:
    """MTCNN's pyramid runs on a copy at most max_side long; the refining stages see the source (issue 11)."""

    def test_a_batch_gives_what_single_images_give(self, detector, astronaut):
        images = [astronaut, astronaut[:, ::-1].copy()]
        boxes, probs, points = detector._mtcnn.detect(np.stack(images))  # the GPU path, run on the CPU
        for image, b, p, pts in zip(images, boxes, probs, points):
            one_box, one_prob, one_points = detector._mtcnn.detect(image)
            np.testing.assert_allclose(b, one_box, atol=1e-3)
            np.testing.assert_allclose(pts, one_points, atol=1e-3)

    def test_a_downscaled_image_gives_the_face_a_full_size_one_gives(self, astronaut):
        big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
        (coarse,) = FaceDetector("cpu", max_side=304).detect(big)
        (full,) = FaceDetector("cpu", max_side=1024).detect(big)
        # MTCNN's landmarks follow the box O-Net is shown; 640 against 1024 moves them as much (3% of the face)
        assert np.abs(coarse.landmarks - full.landmarks).max() < 0.04 * full.short_side

    def test_an_image_too_small_for_the_pyramid_has_no_face(self, detector):
        assert detector.detect(np.full((14, 25, 3), 127, np.uint8)) == []


class TestRefiningSlices:
    """R-Net and O-Net see their candidates in slices of about REFINE_SLICE on the CPU, for the cache's sake: the
    answers must be those of the whole stack, and no slice so small that the convolution changes kernel."""

    @pytest.mark.parametrize("count", [1, 9, 23, 24, 40, 69, 130])
    @pytest.mark.parametrize("stage", ["rnet", "onet"])
    def test_slices_answer_as_the_whole_stack(self, detector, count, stage):
        import torch

        mtcnn = detector._mtcnn
        net, side = (mtcnn.rnet, 24) if stage == "rnet" else (mtcnn.onet, 48)
        crops = np.random.default_rng(count).integers(0, 256, (count, side, side, 3), dtype=np.uint8)
        calls = []
        handle = net.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
        try:
            with torch.inference_mode():
                sliced = mtcnn._refine(net, crops)
                calls_for_slices = list(calls)
                whole = tuple(out.cpu() for out in net(mtcnn._tensor(crops)))
        finally:
            handle.remove()
        assert sum(calls_for_slices) == count
        assert len(calls_for_slices) == max(1, round(count / REFINE_SLICE))
        assert min(calls_for_slices) >= min(count, 10)  # never a sliver: 24 crops are 2 x 12, 69 are 18+17+17+17
        for part, reference in zip(sliced, whole, strict=True):
            assert part.shape == reference.shape
            torch.testing.assert_close(part, reference, atol=1e-5, rtol=0)  # bitwise equal here; 1e-5 is far below
            # a probability step that could move a threshold decision

    def test_the_astronaut_gives_the_same_faces_as_one_stack(self, detector, astronaut, monkeypatch):
        sliced = detector.detect(astronaut)
        monkeypatch.setattr("liveness.data.faces.REFINE_SLICE", 10_000)  # one slice: the whole stack
        whole = detector.detect(astronaut)
        assert [face.box for face in sliced] == [face.box for face in whole]
        assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(sliced, whole, strict=True))


class TestCoarseFirstSearch:
    """search="coarse_first": P-Net's two finest levels run only when the coarse levels find no dominant face."""

    @staticmethod
    def _pnet_levels(detector, image):
        calls = []
        handle = detector._mtcnn.pnet.register_forward_hook(lambda module, inputs, output: calls.append(1))
        try:
            faces = detector.detect(image)
        finally:
            handle.remove()
        return faces, len(calls)

    def test_a_dominant_face_stops_the_search_at_the_coarse_levels(self, full_search, coarse_first, astronaut):
        full, full_levels = self._pnet_levels(full_search, astronaut)
        found, levels = self._pnet_levels(coarse_first, astronaut)
        assert levels == full_levels - 2  # COARSE_SKIPPED_LEVELS
        assert [face.box for face in found] == [face.box for face in full]
        assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(found, full, strict=True))

    @pytest.mark.parametrize("image", ["camera", "no_face"])
    def test_without_a_dominant_face_the_result_is_the_full_search(self, full_search, coarse_first, image):
        # the cameraman's face (56x79 px at 512) has less than twice the area of a 40 px face; grey has none
        pixels = (cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB) if image == "camera"
                  else np.full((300, 400, 3), 127, np.uint8))
        full, full_levels = self._pnet_levels(full_search, pixels)
        found, levels = self._pnet_levels(coarse_first, pixels)
        assert levels == full_levels  # the coarse levels are reused, not run twice
        assert [face.box for face in found] == [face.box for face in full]
        assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(found, full, strict=True))

    def test_the_full_search_after_a_coarse_pass_runs_no_crop_twice(self, full_search, coarse_first, astronaut,
                                                                    monkeypatch):
        # the astronaut in a 560 px frame: its face is large enough to be refined first, yet not dominant
        image = np.full((560, 560, 3), 110, np.uint8)
        image[:512, :512] = astronaut
        passes = []
        refined = type(coarse_first._mtcnn)._refined
        monkeypatch.setattr(type(coarse_first._mtcnn), "_refined",
                            lambda self, *args, **kwargs: passes.append(1) or refined(self, *args, **kwargs))

        def crops_seen(detector):
            seen = {"rnet": 0, "onet": 0}
            hooks = [getattr(detector._mtcnn, name).register_forward_hook(
                lambda module, inputs, output, name=name: seen.__setitem__(name, seen[name] + len(inputs[0])))
                for name in seen]
            try:
                return detector.detect(image), seen
            finally:
                for hook in hooks:
                    hook.remove()

        full, full_crops = crops_seen(full_search)
        passes.clear()
        found, crops = crops_seen(coarse_first)
        assert len(passes) == 2  # the coarse pass, then the full search
        assert crops == full_crops  # the coarse pass's crops were answered once, and reused
        assert [face.box for face in found] == [face.box for face in full]

    def test_a_small_face_beside_a_dominant_one_is_not_searched_and_changes_no_choice(self, full_search, coarse_first,
                                                                                      astronaut):
        image = astronaut.copy()
        small = cv2.resize(astronaut[40:200, 160:290], (40, 49), interpolation=cv2.INTER_AREA)  # a 27 px face
        image[440:489, 440:480] = small
        full, coarse = full_search.detect(image), coarse_first.detect(image)
        assert len(full) == 2 and len(coarse) == 1
        chosen_full, reason_full = choose_face(full, "largest", 2.0)
        chosen, reason = choose_face(coarse, "largest", 2.0)
        assert reason is None and reason_full is None and chosen.box == chosen_full.box

    def test_a_batch_gives_what_single_images_give(self, coarse_first, astronaut):
        camera = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)
        images = [camera, astronaut, np.full((512, 512, 3), 127, np.uint8), astronaut[:, ::-1].copy()]
        boxes, probs, points = coarse_first._mtcnn.detect(np.stack(images))  # the GPU path, run on the CPU
        for image, b, p, pts in zip(images, boxes, probs, points, strict=True):
            one_box, one_prob, one_points = coarse_first._mtcnn.detect(image)
            assert b.shape == one_box.shape
            np.testing.assert_allclose(b, one_box, atol=1e-3)
            np.testing.assert_allclose(pts, one_points, atol=1e-3)

    def test_bad_settings_are_refused(self):
        with pytest.raises(ValueError, match="search"):
            FaceDetector("cpu", search="fastest")
        with pytest.raises(ValueError, match="dominance"):
            FaceDetector("cpu", search="coarse_first", dominance=0.5)
