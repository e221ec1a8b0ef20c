"""Swagger UI's "Try it out" against the local server, in headless Chromium (Debian's `chromium` and
`chromium-driver`; `make browser` installs them, .ci/run does in CI): authorize with a token, send
the documented example request, and get scored predictions back from the same server.

SWAGGER_SCREENSHOT=path keeps a screenshot of the page with the answer."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.integration.live_api import LiveApi

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-request.json"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
_SET_TEXT = """
const setValue = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
setValue.call(arguments[0], arguments[1]);
arguments[0].dispatchEvent(new Event("input", {bubbles: true}));
"""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM and DRIVER, "needs Debian's chromium and chromium-driver: run `make browser`"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800"):
        options.add_argument(argument)
    # The driver is named, so Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _element(browser: webdriver.Chrome, selector: str, seconds: float = 60) -> WebElement:
    condition = expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, selector))
    element: WebElement = WebDriverWait(browser, seconds).until(condition)
    return element


def test_try_it_out_scores_the_example_on_the_server_that_served_the_page(
    live_api: LiveApi, browser: webdriver.Chrome
) -> None:
    browser.get(f"{live_api.url}/v1/docs")
    _element(browser, "button.authorize").click()
    _element(browser, ".modal-ux input").send_keys(live_api.token("predict"))
    _element(browser, ".modal-ux .auth-btn-wrapper button.authorize").click()
    _element(browser, ".modal-ux button.btn-done").click()
    _element(browser, ".opblock-post .opblock-summary").click()
    _element(browser, ".opblock-post .try-out__btn").click()
    # Typed key by key the example takes a minute; set as React expects, it takes no time.
    browser.execute_script(_SET_TEXT, _element(browser, ".opblock-post textarea.body-param__text"), EXAMPLE.read_text())
    _element(browser, ".opblock-post button.execute").click()
    status = _element(browser, ".opblock-post .live-responses-table .response .response-col_status", 120)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", status)
    if os.environ.get("SWAGGER_SCREENSHOT"):
        browser.save_screenshot(os.environ["SWAGGER_SCREENSHOT"])
    assert status.text.strip() == "200"
    assert browser.find_element(By.CSS_SELECTOR, ".opblock-post .request-url pre").text == f"{live_api.url}/v1/predict"
    answer = json.loads(browser.find_element(By.CSS_SELECTOR, ".opblock-post .live-responses-table pre").text)
    encounters = json.loads(EXAMPLE.read_text())["encounters"]
    assert [p["encounter_id"] for p in answer["predictions"]] == [e["encounter_id"] for e in encounters]
