"""Videos and series in the clinician app: a video is its poster frame and length, a series is
photos of one lesion chosen together; both give one result that says how steady it was.

Headless Chromium for the pages (axe-core on each, screenshots under ``tests/artifacts/``), httpx
for the refusals.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser import LiveServer, assert_accessible, failed_requests
from tests.clinician.conftest import ARTIFACTS, Clinician, ClinicianApp, fhir_search, live_app, make_app
from tests.clinician.footage_chart import FootageChart, seed_footage_chart
from tests.smart_auth_server import SmartAuthServer
from workers.celery_app import services
from workers.progress import Progress, ProgressBoard

pytestmark = pytest.mark.fhir_server

_ALL_IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
TIS = "Three Item Severity score (AI)"


@pytest.fixture(scope="module")
def footage(fhir_server: str) -> FootageChart:
    return seed_footage_chart(fhir_server)


@pytest.fixture
def running(tmp_path: Path, ehr: SmartAuthServer) -> Iterator[ClinicianApp]:
    with live_app(tmp_path, ehr, abstain_max_spread=1e9, abstain_max_ood=1e9) as app:
        yield app


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.browser
def test_a_video_is_a_poster_with_its_length_and_gives_one_steady_result(
    browser_page: Page, running: ClinicianApp, footage: FootageChart, ehr: SmartAuthServer, fhir_server: str
) -> None:
    page = browser_page
    failures = failed_requests(page)
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(ehr.launch_url(footage.patient))
    video = page.locator("li.card").filter(has_text="Video of 1 Dec 2026 · Right shin")
    expect(video.locator(".clip")).to_have_text("▶ 0:03")
    expect(video).to_contain_text("Video, 3\u00a0s: its frames are analysed together")
    expect(video.get_by_role("img", name="Video of 1 Dec 2026 · Right shin (poster frame)")).to_be_visible()
    # A video filed as a DocumentReference, no duration stated: its length is read from the clip.
    document = page.locator("li.card").filter(has_text="Video of 28 Nov 2026")
    expect(document.locator(".clip")).to_have_text("▶ 0:02")
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert_accessible(page, "patient view with videos")
    _screenshot(page, "clinician-videos.png")
    page.set_viewport_size({"width": 768, "height": 1024})  # a tablet in portrait: nothing runs off
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1280, "height": 1000})

    video.get_by_role("button", name=re.compile("Analyse this video")).click()
    expect(page.get_by_role("heading", name="Analysis")).to_be_visible()
    result = page.get_by_role("article", name=TIS)
    expect(result).to_be_visible(timeout=90_000)
    frames = result.locator("table.frames")
    expect(frames).to_contain_text("Frames analysed")
    expect(frames).to_contain_text("of the frames agree with this result")
    expect(
        page.get_by_role("img", name=re.compile("The analysed video \\(its poster frame\\)"))
    ).to_be_visible()
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert_accessible(page, "video result")
    _screenshot(page, "clinician-video-result.png")
    assert failures == []

    observation_ref = result.get_by_role("link", name="Observation/").inner_text()
    (observation,) = fhir_search(fhir_server, "Observation", _id=observation_ref.split("/")[1])
    assert observation["derivedFrom"][0]["reference"].split("/_history")[0] == footage.video
    parts = {c["code"]["coding"][0]["code"] for c in observation["component"]}
    assert {"frames-analysed", "frames-rejected", "frame-agreement"} <= parts


@pytest.mark.browser
def test_photos_of_one_lesion_chosen_together_are_one_series_result(
    browser_page: Page, running: ClinicianApp, footage: FootageChart, ehr: SmartAuthServer, fhir_server: str
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(ehr.launch_url(footage.patient))
    for label in ("Photo of 2 Dec 2026 · Right shin",):
        for checkbox in page.get_by_label(f"Select {label}").all():
            checkbox.check()
    page.get_by_role("button", name="Analyse selected as one lesion").click()
    expect(page.get_by_role("heading", name=re.compile("Series of 2 photos"))).to_be_visible()
    expect(
        page.get_by_role("list", name="The photos analysed as one lesion").get_by_role("img")
    ).to_have_count(2)
    result = page.get_by_role("article", name=TIS)
    expect(result).to_be_visible(timeout=90_000)
    expect(result.locator("table.frames")).to_contain_text("Photos analysed")
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert_accessible(page, "series result")
    _screenshot(page, "clinician-series-result.png")
    observation_ref = result.get_by_role("link", name="Observation/").inner_text()
    (observation,) = fhir_search(fhir_server, "Observation", _id=observation_ref.split("/")[1])
    derived = sorted(d["reference"].split("/_history")[0] for d in observation["derivedFrom"])
    assert derived == sorted(footage.shin_photos)
    # Back on the chart, the one result is an earlier result of each photo it came from.
    page.goto(ehr.launch_url(footage.patient))
    earlier = page.get_by_role("region", name="Earlier results for Photo of 2 Dec 2026 · Right shin")
    expect(earlier).to_have_count(len(footage.shin_photos))
    for region in earlier.all():
        line = region.get_by_role("listitem").filter(has_text=observation_ref)
        expect(line).to_contain_text(f"one result from a series of {len(footage.shin_photos)} photos")
    earlier.first.scroll_into_view_if_needed()
    _screenshot(page, "clinician-series-earlier.png")


def _clinician(ehr: SmartAuthServer) -> Clinician:
    return Clinician(ehr)


def test_photos_of_two_body_sites_or_a_video_are_no_series(
    running: ClinicianApp, footage: FootageChart, ehr: SmartAuthServer
) -> None:
    clinician = _clinician(ehr)
    page = clinician.launch(footage.patient)
    csrf = clinician.csrf(page)
    for chosen, reason in (
        ([footage.shin_photos[0], footage.forearm_photo], "one lesion on one body site"),
        ([footage.shin_photos[0], footage.video], "a video is many frames already"),
        ([footage.shin_photos[0]], "a series is 2 to"),
    ):
        refused = clinician.http.post(
            str(page.url) + "analyse", data={"csrf_token": csrf, "photo": chosen, "together": "series"}
        )
        assert refused.status_code == 422, refused.text
        assert reason in refused.text
    with running.app.app_context():
        assert services().jobs.list_jobs() == []
    clinician.close()


def test_the_poster_carries_no_metadata_and_a_series_shown_not_saved_carries_its_photos(
    running: ClinicianApp, footage: FootageChart, ehr: SmartAuthServer
) -> None:
    clinician = _clinician(ehr)
    page = clinician.launch(footage.patient)
    kind, ident = footage.video.split("/")
    poster = clinician.http.get(f"{page.url}photos/{kind}/{ident}/image")
    assert poster.status_code == 200 and poster.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(poster.content))
    assert max(image.size) <= 320 and not image.getexif()

    ehr.withheld_scopes = {"patient/Observation.c", "patient/Provenance.c"}
    unsaved = clinician.launch(footage.patient)
    answer = clinician.http.post(
        str(unsaved.url) + "analyse",
        data={
            "csrf_token": clinician.csrf(unsaved),
            "photo": list(footage.shin_photos),
            "together": "series",
        },
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 90
    while not clinician.http.get(str(answer.url) + "/status.json").json()["finished"]:
        assert time.monotonic() < deadline, "the series did not finish in 90 s"
        time.sleep(0.3)
    with running.app.app_context():
        (job,) = services().jobs.list_jobs(limit=1)
    assert job.status == "done" and job.fhir_base is None and job.credential is None
    assert job.result_bundle is not None
    shown = clinician.http.get(str(answer.url))
    assert "Not saved to the record." in shown.text and "Photos analysed" in shown.text
    clinician.close()


def test_a_running_videos_progress_counts_frames(
    tmp_path: Path, footage: FootageChart, ehr: SmartAuthServer
) -> None:
    app = make_app(tmp_path, ehr)  # no worker: the job stays where the test puts it
    with LiveServer(app) as live:
        ehr.register_app(live.url)
        clinician = _clinician(ehr)
        page = clinician.launch(footage.patient)
        answer = clinician.http.post(
            str(page.url) + "analyse", data={"csrf_token": clinician.csrf(page), "only": footage.video}
        )
        status_url = str(answer.url) + "/status.json"
        (job,) = clinician.http.get(status_url).json()["jobs"]
        assert job["label"] == "Waiting"
        with app.app_context():
            store = services().jobs
            store.claim(job["id"], worker="elsewhere:1", lease_s=60, max_jobs=1)
            ProgressBoard(store.engine).report(job["id"], Progress(4, 9, "frame"))
        (job,) = clinician.http.get(status_url).json()["jobs"]
        assert job["label"] == "Analysing — frame 4 of 9"
        assert "Analysing — frame 4 of 9" in clinician.http.get(str(answer.url)).text
        clinician.close()
    services(app).close()
