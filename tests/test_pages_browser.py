"""The front page and model cards as a person sees them: `make run` over real HTTP, rendered by a real headless
Chromium (Debian's chromium + chromium-driver, driven by selenium). Every chart is drawn and visible, the
browser logs no error (a Content-Security-Policy violation would be one), and it requests nothing outside the
service. A full-page screenshot of each page is kept in tests/artifacts/pages/ (CI keeps the workspace).

Without Chromium the tests are skipped, unless REQUIRE_BROWSER=1 (which .ci/run sets after installing it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_local_server import Server, start_server, stop_server

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "pages"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError(
            "REQUIRE_BROWSER=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        )
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

# (model, version, training body, charts its card must draw)
MODELS = [
    (
        "cancer",
        1,
        {
            "algorithm": "logistic_regression",
            "data": {"dataset": "breast_cancer"},
            "description": "Flags tumours for review",
        },
        {"confusion-matrix", "roc", "pr", "feature-importance", "partial-dependence-0"},
    ),
    (
        "flowers",
        1,
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 20}},
        {"confusion-matrix", "feature-importance", "partial-dependence-0"},
    ),
    (
        "sugar",
        1,
        {"algorithm": "gradient_boosting", "data": {"dataset": "diabetes"}, "hyperparameters": {"n_estimators": 30}},
        {"residuals", "predicted-vs-actual", "feature-importance", "partial-dependence-0"},
    ),
]


@pytest.fixture(scope="module")
def service() -> Iterator[Server]:
    running = start_server()
    try:
        for model, _, body, _ in MODELS:
            status, answer = running.call("POST", f"/models/{model}/versions", body)
            assert status == 201, answer
        assert running.call("PUT", "/models/flowers/stages/production", {"version": 1})[0] == 200
        assert running.call("PUT", "/models/cancer/stages/staging", {"version": 1})[0] == 200
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked the network for since the last call (from the DevTools performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _open(driver: Any, service: Server, path: str, name: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get_log("performance")
    driver.get(service.url + path)
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, f"{path}: the browser logged {errors}"
    outside = [u for u in _requested_urls(driver) if not u.startswith(service.url + "/")]
    assert not outside, f"{path}: requests outside the service: {outside}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1280, min(max(900, int(height) + 40), 16000))
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1280, 900)


def _visible_charts(driver: Any) -> set[str]:
    from selenium.webdriver.common.by import By

    shown = set()
    for svg in driver.find_elements(By.CSS_SELECTOR, "svg[data-chart]"):
        size = svg.size
        marks = svg.find_elements(By.CSS_SELECTOR, "rect, path, circle, line, polyline")
        if svg.is_displayed() and size["width"] >= 150 and size["height"] >= 80 and len(marks) >= 3:
            shown.add(svg.get_attribute("data-chart"))
    return shown


def test_the_front_page_lists_every_model_and_links_to_their_cards(service: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, service, "/", "front_page")
    text = browser.find_element(By.TAG_NAME, "body").text
    for model, _, _, _ in MODELS:
        assert model in text
    assert "production" in text and "staging" in text
    hrefs = {a.get_attribute("href") for a in browser.find_elements(By.TAG_NAME, "a")}
    for model, version, _, _ in MODELS:
        assert f"{service.url}/models/{model}/versions/{version}/card" in hrefs
    assert f"{service.url}/docs" in hrefs
    # the links work: follow one to its card
    browser.find_element(By.CSS_SELECTOR, 'a[href$="models/flowers/versions/1/card"]').click()
    assert browser.current_url == f"{service.url}/models/flowers/versions/1/card"
    assert "flowers" in browser.title


@pytest.mark.parametrize(
    ("model", "version", "charts"), [(m, v, c) for m, v, _, c in MODELS], ids=[m[0] for m in MODELS]
)
def test_a_model_card_draws_every_chart_offline(
    service: Server, browser: Any, model: str, version: int, charts: set
) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, service, f"/models/{model}/versions/{version}/card", f"card_{model}")
    status, card = service.call("GET", f"/models/{model}/versions/{version}/card?format=json")
    assert status == 200
    expected = charts | {f"partial-dependence-{i}" for i in range(len(card["evaluation"]["partial_dependence"]))}
    missing = expected - _visible_charts(browser)
    assert not missing, f"charts not drawn: {sorted(missing)}"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert card["digests"]["model.joblib"][:16] in body.replace("\n", "")
    for name in ("data", "metrics", "history"):
        assert browser.find_elements(By.CSS_SELECTOR, f"section[id*='{name}']"), f"no {name} section"
    home = browser.find_element(By.CSS_SELECTOR, 'a[href$="../../../../"], a[href="../../../../"]')
    home.click()
    assert browser.current_url == service.url + "/"
