"""The REST app in-process: answers, 4xx refusals for every bad-corpus file, limits, timeouts, readiness."""

from __future__ import annotations

import numpy as np
import pytest

from liveness.serve.limits import STATUS_BY_REASON, UNSUPPORTED_MEDIA
from tests.fixtures.bad_images import CONVERTED, PATH_ONLY_REASONS, astronaut, write_bad_image_corpus
from tests.fixtures.serving import jpeg

pytestmark = pytest.mark.slow  # the module's app loads MTCNN and a generator once (a few seconds on 2 cores)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[bytes, str | None]]:
    """Every bad-corpus entry that is bytes (not a path trick), with the decoder reason it must be refused for."""
    folder = tmp_path_factory.mktemp("corpus")
    expected = write_bad_image_corpus(folder)
    return {name: ((folder / name).read_bytes(), reason) for name, reason in expected.items()
            if reason not in PATH_ONLY_REASONS}


def expected_status(reason: str) -> int:
    return STATUS_BY_REASON.get(reason, UNSUPPORTED_MEDIA)


class TestAnswers:
    def test_health_ready_and_model_identity(self, client, bundle):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["model"] == {"name": "tiny", "version": "local", "uri": str(bundle)}
        assert ready.json()["trained_on"] == "synthetic"

    def test_face_photo_raw_and_multipart_give_the_same_decision(self, client, face_jpeg):
        raw = client.post("/v1/liveness", content=face_jpeg, headers={"content-type": "image/jpeg"})
        form = client.post("/v1/liveness", files={"image": ("face.jpg", face_jpeg, "image/jpeg")})
        assert raw.status_code == form.status_code == 200, raw.text
        body = raw.json()
        assert body["faces"] == 1 and body["face_found"] and body["reason"] == ""
        x1, y1, x2, y2 = body["box"]
        assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 210  # astronaut's face, in source pixels
        assert body["threshold"] == 0.5 and body["label"] == ("spoof" if body["score"] > 0.5 else "live")
        assert body["model"]["version"] == "local" and body["latency_ms"] > 0
        assert body["trained_on"] == form.json()["trained_on"] == "synthetic"  # the tiny bundle's config.json says so
        assert form.json()["score"] == pytest.approx(body["score"]) and form.json()["box"] == body["box"]

    def test_no_face_is_a_valid_200_answer(self, client):
        answer = client.post("/v1/liveness", content=jpeg(np.full((128, 128, 3), 120, np.uint8)))
        assert answer.status_code == 200
        body = answer.json()
        assert (body["faces"], body["face_found"], body["label"], body["score"], body["box"]) == (0, False, "no_face", None, None)
        assert body["trained_on"] == "synthetic" and body["model"]["name"] == "tiny"

    def test_two_equal_faces_are_refused_as_a_200_decision(self, client):
        answer = client.post("/v1/liveness", content=jpeg(np.hstack([astronaut(), astronaut()])))
        assert answer.status_code == 200
        body = answer.json()
        assert (body["faces"], body["label"], body["reason"]) == (None, "rejected", "multiple_faces")
        assert body["detail"].startswith("2 faces found")


class TestBadInput:
    def test_every_bad_corpus_file_is_a_4xx_naming_its_reason(self, client, corpus, face_jpeg):
        for name, (data, reason) in corpus.items():
            answer = client.post("/v1/liveness", content=data, headers={"content-type": "application/octet-stream"})
            if reason is None:
                assert answer.status_code == 200, (name, answer.text)
                assert answer.json()["converted"] == CONVERTED[name], name
                continue
            assert answer.status_code == expected_status(reason), (name, answer.text)
            assert answer.json()["error"] == reason and answer.json()["detail"], name
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/liveness", content=face_jpeg).status_code == 200

    def test_batch_gives_each_item_its_own_status(self, client, corpus, face_jpeg):
        names = [*corpus, "face.jpg"]
        files = [("images", (name, data, "application/octet-stream")) for name, (data, _) in corpus.items()]
        answer = client.post("/v1/liveness/batch", files=files + [("images", ("face.jpg", face_jpeg, "image/jpeg"))])
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert answer.json()["trained_on"] == "synthetic" and answer.json()["model"]["version"] == "local"
        assert all(item["trained_on"] == "synthetic" for item in results)
        assert [item["filename"] for item in results] == names and [item["index"] for item in results] == list(range(len(names)))
        for item in results:
            reason = corpus.get(item["filename"], (b"", None))[1]
            if reason is None:
                assert item["status"] == 200 and item["result"]["label"] in {"live", "spoof", "no_face", "rejected"}
                assert item["result"]["trained_on"] == "synthetic"
                assert item["result"]["converted"] == CONVERTED.get(item["filename"], ""), item["filename"]
            else:
                assert (item["status"], item["error"], item["result"]) == (expected_status(reason), reason, None)
        face = results[-1]["result"]
        single = client.post("/v1/liveness", content=face_jpeg).json()
        assert face["faces"] == 1 and face["score"] == pytest.approx(single["score"], rel=1e-5)

    def test_empty_body_is_400(self, client):
        answer = client.post("/v1/liveness", content=b"")
        assert (answer.status_code, answer.json()["error"]) == (400, "empty_file")

    def test_form_and_json_bodies_are_415(self, client):
        answer = client.post("/v1/liveness", json={"image": "aGVsbG8="})
        assert (answer.status_code, answer.json()["error"]) == (415, "unsupported_content_type")
        assert client.post("/v1/liveness", data={"image": "x"}).status_code == 415

    def test_multipart_without_a_file_is_400(self, client):
        answer = client.post("/v1/liveness", files={"note": (None, "no file here")})
        assert (answer.status_code, answer.json()["error"]) == (400, "no_image")

    def test_several_files_to_the_single_endpoint_are_refused(self, client, face_jpeg):
        files = [("images", ("a.jpg", face_jpeg, "image/jpeg")), ("images", ("b.jpg", face_jpeg, "image/jpeg"))]
        answer = client.post("/v1/liveness", files=files)
        assert (answer.status_code, answer.json()["error"]) == (400, "several_images")
        assert "/v1/liveness/batch" in answer.json()["detail"]

    def test_batch_over_max_images_is_413(self, client, face_jpeg):
        files = [("images", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(65)]
        answer = client.post("/v1/liveness/batch", files=files)
        assert (answer.status_code, answer.json()["error"]) == (413, "too_many_images")

    def test_batch_needs_multipart(self, client, face_jpeg):
        answer = client.post("/v1/liveness/batch", content=face_jpeg, headers={"content-type": "image/jpeg"})
        assert (answer.status_code, answer.json()["error"]) == (415, "unsupported_content_type")

    def test_unknown_route_is_a_json_404(self, client):
        answer = client.get("/v2/nothing")
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


class TestObservability:
    def test_metrics_count_requests_refusals_and_the_served_model(self, client):
        client.post("/v1/liveness", content=b"not an image")
        client.get("/healthz")
        text = client.get("/metrics").text
        assert 'liveness_http_requests_total{route="/v1/liveness",status="415"}' in text
        assert 'liveness_http_requests_total{route="/healthz",status="200"}' in text
        assert 'liveness_refused_images_total{error="not_an_image"}' in text
        assert 'liveness_model_info{name="tiny",version="local"} 1.0' in text
        assert "liveness_model_ready 1.0" in text and "liveness_http_request_duration_seconds_bucket" in text

    def test_openapi_documents_the_endpoints_and_bodies(self, client):
        spec = client.get("/openapi.json").json()
        assert {"/v1/liveness", "/v1/liveness/batch", "/healthz", "/readyz", "/metrics"} <= spec["paths"].keys()
        single = spec["paths"]["/v1/liveness"]["post"]
        assert {"multipart/form-data", "image/jpeg", "application/octet-stream"} <= single["requestBody"]["content"].keys()
        assert {"200", "413", "415", "422"} <= single["responses"].keys()
        assert client.get("/docs").status_code == 200
