"""A real browser (Debian's chromium driven by Playwright) against ``brainxai serve`` on loopback."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from brainxai.constants import CLASS_TITLES
from brainxai.web.process import ServerProcess, add_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "clinician", "browser-test-password"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (/usr/bin/chromium)"),
]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    add_user(data_dir, USER, PASSWORD)
    with ServerProcess(data_dir, random_checkpoint) as server:
        yield server


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots go here (set BRAINXAI_SCREENSHOT_DIR to keep them)."""
    keep = os.environ.get("BRAINXAI_SCREENSHOT_DIR")
    folder = Path(keep) if keep else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_login_analyse_download_batch_and_history(
    live_server: ServerProcess, samples_dir: Path, shots: Path, failed_crop_scan, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright
    from pypdf import PdfReader

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        page = context.new_page()
        requests_elsewhere: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(live_server.url) else requests_elsewhere.append(r.url))
        page.set_default_timeout(180_000)

        page.goto(live_server.url + "/")
        expect(page.locator("#login-view")).to_be_visible()
        expect(page.get_by_text("Research use only.")).to_be_visible()
        page.screenshot(path=str(shots / "01-login.png"))
        page.fill("#login-user", USER)
        page.fill("#login-password", "wrong-password")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
        page.fill("#login-password", PASSWORD)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#app-view")).to_be_visible()
        expect(page.locator("#server-status")).to_contain_text("efficientnet-lite0")
        expect(page.locator("#server-status")).to_have_class("status status-ok")
        methods = set(page.locator("#method option").all_inner_texts())
        assert {"LRP", "Grad-CAM", "Grad-CAM++", "HiRes-CAM", "Guided Grad-CAM"} <= methods, methods

        # Single scan, with a patient.
        page.fill("#patient-code", "BT-1001")
        page.fill("#patient-name", "Test Patient")
        page.fill("#patient-birth", "1961-03-14")
        page.select_option("#patient-sex", "F")
        page.select_option("#method", "gradcam")
        page.set_input_files("#file-single", str(samples_dir / "glioma.jpg"))
        expect(page.locator("#single-file-name")).to_have_text("glioma.jpg")
        page.click("#analyze")
        expect(page.locator("#result")).to_be_visible()
        assert page.locator("#prediction").inner_text() in CLASS_TITLES.values()
        expect(page.locator("#prob-bars .bar-row")).to_have_count(4)
        expect(page.locator("#spatial tbody tr").first).to_be_visible()
        heatmap = page.locator("#img-heatmap")
        page.wait_for_function(
            "() => { const i = document.getElementById('img-heatmap'); return i.complete && i.naturalWidth > 0; }"
        )
        assert heatmap.evaluate("i => i.naturalWidth") > 32
        for kind in ("original", "overlay", "outline", "mask"):
            assert page.locator(f"#img-{kind}").evaluate("i => i.complete && i.naturalWidth > 0"), kind
        expect(page.locator("#result-warnings")).to_be_hidden()
        page.screenshot(path=str(shots / "02-result.png"), full_page=True)

        with page.expect_download() as info:
            page.click("#pdf-link")
        download = info.value
        pdf_path = shots / "report.pdf"
        download.save_as(str(pdf_path))
        data = pdf_path.read_bytes()
        assert data.startswith(b"%PDF")
        text = "".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages)
        assert "BT-1001" in text or "Test Patient" in text

        # Batch of three.
        page.click("button[data-tab=batch]")
        files = [str(samples_dir / f"{c}.jpg") for c in ("meningioma", "notumor", "pituitary")]
        page.set_input_files("#file-batch", files)
        page.click("#batch-start")
        expect(page.locator("#batch-summary")).to_contain_text("3 of 3 files finished", timeout=300_000)
        expect(page.locator("#batch-rows tr[data-status=done]")).to_have_count(3)
        page.screenshot(path=str(shots / "03-batch.png"), full_page=True)

        # History lists the four studies of the patient.
        page.click("button[data-tab=history]")
        patient = page.locator("#patient-list li[data-patient='BT-1001']")
        expect(patient).to_contain_text("4 studies")
        patient.click()
        expect(page.locator("#study-rows tr")).to_have_count(4)
        names = page.locator("#study-rows tr td:nth-child(2)").all_inner_texts()
        assert sorted(names) == ["glioma.jpg", "meningioma.jpg", "notumor.jpg", "pituitary.jpg"]
        page.screenshot(path=str(shots / "04-history.png"), full_page=True)

        # Opening a past study shows it again.
        page.locator("#study-rows tr", has_text="glioma.jpg").get_by_role("button", name="Open").click()
        expect(page.locator("#result")).to_be_visible()
        expect(page.locator("#study-meta")).to_contain_text("glioma.jpg")

        # A scan whose automatic crop failed is flagged above the result.
        from PIL import Image

        dark = tmp_path / "dark.png"
        Image.fromarray(failed_crop_scan).save(dark)
        page.click("button[data-tab=single]")
        page.set_input_files("#file-single", str(dark))
        page.click("#analyze")
        expect(page.locator("#study-meta")).to_contain_text("dark.png")
        expect(page.locator("#result-warnings")).to_be_visible()
        expect(page.locator("#result-warnings")).to_contain_text("automatic head crop kept only")
        page.screenshot(path=str(shots / "05-crop-warning.png"), full_page=True)

        page.click("#logout")
        expect(page.locator("#login-view")).to_be_visible()
        browser.close()
    assert requests_elsewhere == [], requests_elsewhere  # fully offline: nothing but our server
    assert "Traceback" not in live_server.log_tail(20_000)
