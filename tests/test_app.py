"""`genlab app` in a real browser: Debian's headless Chromium driven by Selenium against the app's own ``serve``
(run in a thread, on a free port of 127.0.0.1) with two tiny runs trained here (a 2-D-latent VAE and a PixelCNN on
the bundled digits). Screenshots of every view go to $GENLAB_ARTIFACTS (default: a pytest temporary folder).

The tests that use the browser are marked ``browser``; the README's test command (and .ci/run, which installs chromium and chromium-driver with apt)
runs them. Without the browser they skip and say how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the app extra is not installed: pip install -e \".[app]\"")
pytest.importorskip("uvicorn", reason="the app extra is not installed: pip install -e \".[app]\"")

import genlab  # noqa: E402
from genlab.app.server import serve  # noqa: E402
from genlab.cli import main  # noqa: E402
from genlab.ood.run import OODOptions  # noqa: E402
from genlab.reports.ood import ood_run  # noqa: E402

QUIET = {"train.progress": False}
WAIT_S = 90  # a generous ceiling for one page update on a loaded 2-core machine (never a timing assert)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-runs")
    vae = genlab.train("vae", data="digits", steps=30, out=root / "vae", batch_size=32, device="cpu", latent_dim=2,
                       optim__lr=2e-3, overrides={"model.hidden": 32, **QUIET}, model__channels=(8, 16))
    pixelcnn = genlab.train("pixelcnn", data="digits", steps=2, out=root / "pixelcnn", batch_size=16, device="cpu",
                            overrides=["model.channels=8", "model.residual_blocks=1", "model.head_channels=16",
                                       "train.progress=false"])
    # In-distribution scores for the score view's histogram: `genlab ood` against a small set of noise images.
    noise = root / "noise.npz"
    np.savez(noise, images=np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    ood_run(vae.path, OODOptions(ood=[str(noise)], max_examples=40, reference_examples=40, iwae_k=4,
                                 device="cpu", report=False), log=lambda *a: None)
    return vae.path, pixelcnn.path


@pytest.fixture(scope="module")
def server(runs):
    """The app's own ``serve`` in a thread; yields (url, temporary folder); stops it and checks the folder is gone."""
    started = threading.Event()
    state = {}

    def on_start(srv, url, tmp):
        state.update(server=srv, url=url, tmp=tmp)
        started.set()

    def target():
        try:
            serve([str(r) for r in runs], port=0, device="cpu", max_upload_mb=0.05, log=lambda *a: None,
                  on_start=on_start)
        except BaseException as err:  # shown by the assert below
            state["error"] = err
            started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(120) and "error" not in state, state.get("error")
    yield state["url"], state["tmp"]
    state["server"].should_exit = True
    thread.join(60)
    assert not thread.is_alive()
    assert not state["tmp"].exists(), "the temporary folder of uploads was not removed"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ["GENLAB_ARTIFACTS"]) if os.environ.get("GENLAB_ARTIFACTS") else \
        tmp_path_factory.mktemp("app-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are not installed: apt-get install -y chromium "
                    "chromium-driver (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e \".[test]\"")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)  # no driver download
    yield driver
    driver.quit()


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def _by_id(driver, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def _shown(driver, name) -> bool:
    return _by_id(driver, name).is_displayed()


def _img_src(driver, name) -> str:
    return _by_id(driver, name).get_attribute("src") or ""


def _loaded(driver, name) -> bool:
    return bool(driver.execute_script(f"const i = document.getElementById('{name}'); "
                                      "return i.complete && i.naturalWidth > 0 && !i.hidden;"))


def _tab(driver, view: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#tabs button[data-view='{view}']").click()
    _wait(driver, lambda d: _shown(d, f"view-{view}"), f"the {view} view")


def _select_run(driver, label: str):
    from selenium.webdriver.support.ui import Select

    Select(_by_id(driver, "run")).select_by_visible_text(label)


def _digit_png(path: Path, index: int = 0, size: int = 64) -> Path:
    """A test digit saved as an ordinary PNG, larger than the model's 8x8 (the app converts it)."""
    from genlab.config import DataConfig
    from genlab.data import load_dataset

    test = load_dataset("digits", "test", DataConfig(name="digits"))
    levels = test.images[index, 0].numpy()
    Image.fromarray(levels).resize((size, size), Image.NEAREST).save(path)
    return path


@pytest.mark.browser
def test_page_loads(browser, server, artifacts):
    url, _ = server
    browser.get(url)
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1", "the page's runs")
    assert browser.title == "genlab app"
    from selenium.webdriver.common.by import By

    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#run option")]
    assert options == ["vae (vae)", "pixelcnn (pixelcnn)"]
    latent = browser.find_element(By.CSS_SELECTOR, "#tabs button[data-view='latent']")
    completion = browser.find_element(By.CSS_SELECTOR, "#tabs button[data-view='completion']")
    assert latent.is_enabled() and not completion.is_enabled()  # a VAE has latents and does not complete images


@pytest.mark.browser
def test_samples_show_the_pixels_of_genlab_sample(browser, server, runs, artifacts):
    url, _ = server
    vae, _ = runs
    _tab(browser, "samples")
    for name, value in (("sample-seed", "7"), ("sample-n", "16")):
        field = _by_id(browser, name)
        field.clear()
        field.send_keys(value)
    _by_id(browser, "sample-go").click()
    _wait(browser, lambda d: _loaded(d, "sample-image"), "the sample grid")
    shown = _img_src(browser, "sample-image")
    page_png = Image.open(urllib.request.urlopen(shown)).convert("RGB")
    # `genlab sample` with the same seed; its grid also serves the compare view as the run's samples.png.
    assert main(["sample", str(vae), "--n", "16", "--seed", "7", "--device", "cpu",
                 "--out", str(vae / "samples.png")]) == 0
    cli_png = Image.open(vae / "samples.png").convert("RGB")
    assert browser.execute_script("return document.getElementById('sample-image').naturalWidth") == cli_png.width
    assert np.array_equal(np.asarray(page_png), np.asarray(cli_png))
    download = _by_id(browser, "sample-download")
    assert "seed7" in download.get_attribute("download") and "n16" in download.get_attribute("download")
    meta = json.loads(Image.open(urllib.request.urlopen(download.get_attribute("href"))).text["genlab"])
    assert (meta["seed"], meta["n"], meta["sampler"]) == (7, 16, "latent")
    assert "--seed 7" in _by_id(browser, "sample-command").text
    browser.save_screenshot(str(artifacts / "app_samples.png"))


@pytest.mark.browser
def test_latent_slider_changes_the_image(browser, server, artifacts):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _tab(browser, "latent")
    _wait(browser, lambda d: _loaded(d, "manifold"), "the manifold")
    ActionChains(browser).move_to_element_with_offset(_by_id(browser, "manifold"), 40, -60).click().perform()
    _wait(browser, lambda d: _loaded(d, "manifold-point"), "the decoded manifold point")
    assert _by_id(browser, "manifold-z").text.startswith("z = (")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#latent-tests img")) >= 2, "test images")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#latent-tests img")
    thumbs[0].click()
    _wait(browser, lambda d: d.find_elements(By.ID, "slider-0") and _loaded(d, "latent-decoded"), "the sliders")
    before = _img_src(browser, "latent-decoded")
    slider = _by_id(browser, "slider-0")
    slider.click()  # to the middle of its range: z1 = its code's value, then 30 steps of 0.05 up
    slider.send_keys(*[Keys.ARROW_RIGHT] * 30)
    _wait(browser, lambda d: _img_src(d, "latent-decoded") != before, "the decoded image to change with the slider")
    browser.find_element(By.CSS_SELECTOR, "input[name=slot][value=b]").click()
    thumbs[1].click()
    _by_id(browser, "interpolate").click()
    _wait(browser, lambda d: _loaded(d, "interpolation"), "the interpolation strip")
    browser.save_screenshot(str(artifacts / "app_latent.png"))


@pytest.mark.browser
def test_completion_of_a_drawing(browser, server, artifacts):
    from selenium.webdriver.common.action_chains import ActionChains

    _select_run(browser, "pixelcnn (pixelcnn)")
    _tab(browser, "completion")
    canvas = _by_id(browser, "canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -40, -70).click_and_hold().move_by_offset(60, 20) \
        .move_by_offset(-10, 90).release().perform()
    _by_id(browser, "complete-go").click()
    _wait(browser, lambda d: _loaded(d, "complete-image") or _shown(d, "complete-error"), "the completions")
    assert not _shown(browser, "complete-error"), _by_id(browser, "complete-error").text
    browser.save_screenshot(str(artifacts / "app_completion.png"))
    _select_run(browser, "vae (vae)")


@pytest.mark.browser
def test_uploaded_png_gets_a_score(browser, server, tmp_path, artifacts):
    from selenium.webdriver.common.by import By

    _tab(browser, "score")
    _by_id(browser, "score-upload").send_keys(str(_digit_png(tmp_path / "mon chiffre é.png")))
    _wait(browser, lambda d: _shown(d, "score-result") or _shown(d, "score-error"), "the scores")
    assert not _shown(browser, "score-error"), _by_id(browser, "score-error").text
    rows = {tr.find_elements(By.TAG_NAME, "td")[0].text: tr.find_elements(By.TAG_NAME, "td")[2].text
            for tr in browser.find_elements(By.CSS_SELECTOR, "#score-table tr")[1:]}
    assert "bpd" in rows and float(rows["bpd"]) > 0  # raw, and the corrected scores beside it
    assert any(name.startswith("complexity") for name in rows)
    _wait(browser, lambda d: _loaded(d, "score-histogram") and _loaded(d, "score-surprise"), "the figures")
    browser.save_screenshot(str(artifacts / "app_score.png"))


@pytest.mark.browser
def test_corrupt_upload_shows_an_error_and_the_server_keeps_serving(browser, server, tmp_path):
    url, tmp = server
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG signature, then garbage
    _by_id(browser, "score-upload").send_keys(str(bad))
    _wait(browser, lambda d: _shown(d, "score-error"), "the error message")
    message = _by_id(browser, "score-error").text
    assert "cannot read image broken.png" in message and str(tmp) not in message
    assert not list((tmp / "uploads").iterdir()) or all(p.name != "broken.png" for p in (tmp / "uploads").iterdir())
    # Too large for the app's limit (set to 0.05 MiB here): refused with a message, nothing stored.
    request = urllib.request.Request(url + "api/runs/0/upload", data=b"x" * 60_000, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 413 and "limit" in json.loads(refused.value.read())["error"]
    # Still serving: the next good upload is scored.
    _by_id(browser, "score-upload").send_keys(str(_digit_png(tmp_path / "good.png", index=3)))
    _wait(browser, lambda d: _shown(d, "score-result"), "the scores after the bad upload")
    assert not _shown(browser, "score-error")


@pytest.mark.browser
def test_compare_view_is_the_compare_report(browser, server, artifacts):
    from selenium.webdriver.common.by import By

    _tab(browser, "compare")
    _wait(browser, lambda d: d.execute_script(
        "const f = document.getElementById('compare-frame'); return f.contentDocument && "
        "f.contentDocument.title.startsWith('Comparison of')"), "the comparison page")
    browser.switch_to.frame(_by_id(browser, "compare-frame"))
    assert browser.find_elements(By.TAG_NAME, "table")
    browser.switch_to.default_content()
    browser.save_screenshot(str(artifacts / "app_compare.png"))


def test_missing_run_is_one_line_before_any_server(tmp_path, capsys):
    assert main(["app", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlab app: error:") and "nowhere" in err[0]
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{ not json")
    assert main(["app", str(damaged), "--port", "0"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_exposed_host_warns(runs, capsys):
    # An address that cannot be bound: the warning comes first, then the one-line error; nothing listens.
    assert main(["app", str(runs[0]), "--host", "203.0.113.1", "--port", "0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "warning: --host 203.0.113.1 lets anyone" in err and "cannot listen on 203.0.113.1" in err


def test_sample_requests_carry_their_own_generators(runs):
    """Two requests drawn at once give what each gives alone (each job seeds its own generators)."""
    from genlab.app.jobs import Jobs
    from genlab.app.views import AppRun, sample_job

    ar = AppRun("0", genlab.load(runs[0], "cpu"))
    jobs = Jobs(workers=2)
    a, b = jobs.submit(sample_job, ar, {"seed": 1, "n": 32}), jobs.submit(sample_job, ar, {"seed": 2, "n": 32})
    for job in (a, b):
        _wait_job(job)
    assert torch.equal(a.data["images"], ar.run.sample(32, seed=1))
    assert torch.equal(b.data["images"], ar.run.sample(32, seed=2))
    jobs.shutdown()


def _wait_job(job):
    import time

    for _ in range(WAIT_S * 10):
        if job.state != "running":
            break
        time.sleep(0.1)
    assert job.state == "done", job.error
