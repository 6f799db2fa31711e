"""A video's or series' job counts its frames while it runs: the worker writes, the API reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_mappings.photo import Photo
from models.errors import InvalidSeries
from models.results import Concept
from plugin.settings import load_settings
from tests.video.clips import encode, skin_frames
from tests.video.test_video_jobs import post, video_media
from tests.workers.test_batching import make_app, submit
from workers.analysis import PhotoRequest
from workers.batching import run_batch
from workers.celery_app import services
from workers.footage import analyse_requests
from workers.jobs import JobStore
from workers.progress import Progress, ProgressBoard
from workers.writeback import check_one_body_site

CLIP = encode(skin_frames(18, size=256), fps=6)  # 3 s at 3 frames a second: 9 frames sampled


def test_the_worker_counts_a_videos_frames_up_to_all_of_them(tmp_path: Path) -> None:
    app, token = make_app(tmp_path, inference_batch_size=4)
    job_id = submit(app, token, {"resource": video_media(CLIP)})
    with app.app_context():
        board = ProgressBoard(services().jobs.engine)
        assert board.get(job_id) is None
        assert run_batch(services(), job_id).done == (job_id,)
        assert board.get(job_id) == Progress(9, 9, "frame")


def test_frames_are_counted_one_forward_batch_at_a_time(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, device="cpu", inference_tta=False, inference_heatmaps=False, inference_batch_size=4
    )
    heard: list[tuple[int, int]] = []
    request = PhotoRequest(CLIP, declared_content_type="video/mp4", on_frames=lambda *n: heard.append(n))
    (outcome,) = analyse_requests([request], settings)
    assert not isinstance(outcome, Exception)
    assert heard == [(0, 9), (4, 9), (8, 9), (9, 9)]


def test_a_running_jobs_progress_is_in_the_api(tmp_path: Path) -> None:
    app, token = make_app(tmp_path)
    job_id = submit(app, token, {"resource": video_media(CLIP)})
    with app.app_context():
        store = services().jobs
        store.claim(job_id, worker="elsewhere:1", lease_s=60, max_jobs=1)
        ProgressBoard(store.engine).report(job_id, Progress(4, 9, "frame"))
    shown = app.test_client().get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert shown.get_json()["status"] == "running"
    assert shown.get_json()["progress"] == {"done": 4, "total": 9, "unit": "frame"}
    assert post(app, token, {"resource": video_media(CLIP)}).status_code == 202


def test_progress_rows_update_in_place(tmp_path: Path) -> None:
    store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.db'}")
    board = ProgressBoard(store.engine)
    report = board.reporter("a" * 32, "photo")
    report(0, 3)
    report(2, 3)
    assert board.get("a" * 32) == Progress(2, 3, "photo")
    assert Progress(2, 3, "photo").words() == "photo 2 of 3"
    store.close()


def _photo(code: str | None, text: str | None) -> Photo:
    site = (Concept(code, "site", "http://snomed.info/sct"),) if code else ()
    return Photo(None, "Patient/p", "image/jpeg", body_site=site, body_site_text=text)


@pytest.mark.parametrize(
    "photos",
    [
        [_photo("53120007", "Left forearm"), _photo("53120007", "left forearm ")],
        [_photo("53120007", None), _photo(None, "Left forearm")],  # code vs words: nothing to compare
        [_photo(None, None), _photo("53120007", "Left forearm")],  # one states no site
    ],
)
def test_photos_of_one_body_site_are_a_series(photos: list[Photo]) -> None:
    check_one_body_site(photos)


@pytest.mark.parametrize(
    "photos",
    [
        [_photo("53120007", None), _photo("29445007", None)],
        [_photo("53120007", "Left forearm"), _photo("53120007", "Right forearm")],
    ],
)
def test_photos_of_two_body_sites_are_no_series(photos: list[Photo]) -> None:
    with pytest.raises(InvalidSeries, match="one body site"):
        check_one_body_site(photos)
