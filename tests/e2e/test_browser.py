"""The Airflow 3.3 UI in a real browser: the ``kling`` connection form, its Test button, mapped names, the link.

Headless Chromium and ChromeDriver come from the operating system's packages (``chromium``,
``chromium-driver``); Selenium is given both paths, so Selenium Manager never downloads anything. The UI
is a React app: elements are found by what a user reads (labels, button names, ARIA roles) and the form
fields' ``name`` attributes, and every wait waits for something to appear, never for a fixed time.

On failure the browser's screenshot and page source are kept with the stack's logs, in
``.e2e-logs/<test name>/``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# Selenium is in the Airflow 3.3 venv only (the `test-browser` extra); the older legs collect this
# module when they run their unit suites, and must skip it rather than fail to import it.
pytest.importorskip("selenium", reason="the browser test needs the test-browser extra")

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import REPO_ROOT, AirflowStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: No first-run pages, no network of the browser's own (updates, sync, QUIC probes), a fresh profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
#: The UI renders on a busy two-core machine: a page can take a minute before its first text.
UI_TIMEOUT = 180.0
PIPELINE = "example_kling_content_pipeline"
PROMPTS = ["A hummingbird hovers at a red flower, slow motion, shallow depth of field", "a fox in the snow"]
BAD_KEY = "refused-key-7f3a9c1e5b"  # the sandbox accepts only its own key (fixture api_key)
KLING_TYPE = "Kling AI (Novita)"
E2E_LOGS = REPO_ROOT / ".e2e-logs"

T = TypeVar("T")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        # CI never skips: there `make test` has installed the packages, and a missing one must fail.
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and os.environ.get("CI") != "true",
        reason="needs the OS packages chromium and chromium-driver (make test installs them)",
    ),
]


@pytest.fixture(scope="module")
def airflow_stack_options() -> dict[str, Any]:
    """The module's stack lets the UI test connections (Airflow disables it by default)."""
    return {"env": {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}}


@pytest.fixture(scope="module")
def api_key(airflow_stack: AirflowStack) -> str:
    """The key the sandbox accepts: the one in the stack's ``kling_default``."""
    return str(json.loads(airflow_stack.env["AIRFLOW_CONN_KLING_DEFAULT"])["password"])


class Browser:
    """A Chromium session on one Airflow UI that keeps the source of every page it waited for."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.sources: dict[str, str] = {}

    def open(self, path: str) -> None:
        """Load a page of the UI."""
        self.driver.get(self.base_url + path)

    def wait(self, condition: Callable[[webdriver.Chrome], T], what: str, timeout: float = UI_TIMEOUT) -> T:
        """Wait until ``condition`` returns something truthy (stale elements of a re-render are retried)."""
        waiter = WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
        result: T = waiter.until(condition, f"waited {timeout:.0f} s for {what}")
        return result

    def find(self, xpath: str, what: str, within: WebElement | None = None) -> WebElement:
        """The first displayed element matching ``xpath``, once there is one."""
        root: Any = within if within is not None else self.driver

        def displayed(_: webdriver.Chrome) -> WebElement | None:
            return next((el for el in root.find_elements(By.XPATH, xpath) if el.is_displayed()), None)

        found = self.wait(displayed, what)
        assert found is not None  # WebDriverWait returns only a truthy value
        return found

    def snapshot(self, name: str) -> str:
        """Keep the current page's source (checked for secrets at the end of each test)."""
        source = self.driver.page_source
        self.sources[f"{len(self.sources):02d} {name}"] = source
        return source

    def assert_no_secret(self, *secrets: str) -> None:
        """No page kept by :meth:`snapshot` contains any of ``secrets``."""
        assert self.sources, "no page was kept"
        leaks = [(name, secret) for name, source in self.sources.items() for secret in secrets if secret in source]
        assert not leaks, f"secret in page source: {[name for name, _ in leaks]}"


@pytest.fixture(scope="module")
def browser(airflow_stack: AirflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile on the module's Airflow stack."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    previous = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must not reach the network
    try:
        driver = webdriver.Chrome(
            service=Service(str(CHROMEDRIVER), log_output=str(Path(tempfile.gettempdir()) / "kling-chromedriver.log")),
            options=options,
        )
    finally:
        if previous is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = previous
    driver.set_page_load_timeout(UI_TIMEOUT)
    try:
        yield Browser(driver, airflow_stack.base_url)
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest, browser: Browser) -> Iterator[None]:
    """Keep what the browser showed when a test failed, next to the stack's logs."""
    browser.sources.clear()
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    dest = E2E_LOGS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        browser.driver.save_screenshot(str(dest / "browser.png"))
        (dest / "browser.html").write_text(browser.driver.page_source)
        (dest / "browser-url.txt").write_text(browser.driver.current_url + "\n")
    except WebDriverException as exc:  # a dead browser must not hide the test's own failure
        (dest / "browser-error.txt").write_text(repr(exc))


# -- helpers ---------------------------------------------------------------------------------------


def _label_of(browser: Browser, field: WebElement) -> str:
    field_id = field.get_attribute("id")
    return browser.find(f"//label[@for='{field_id}']", f"the label of {field_id}").text.strip()


def _open_add_connection_form(browser: Browser) -> WebElement:
    browser.open("/connections")
    browser.find("//button[normalize-space(.)='Add Connection']", "the Add Connection button").click()
    dialog = browser.find("//*[@role='dialog']", "the Add Connection dialog")
    combo = browser.find(".//input[@role='combobox']", "the connection type picker", within=dialog)
    combo.send_keys("Kling")
    browser.find(f"//*[@role='option'][normalize-space(.)='{KLING_TYPE}']", f"the option {KLING_TYPE}").click()
    browser.find(".//input[@name='host']", "the Base URL field", within=dialog)
    return dialog


def _add_connection(browser: Browser, conn_id: str, *, host: str, api_key: str, port: str) -> None:
    """Fill in and save the form the way docs/connection.md says (base URL, API key, its port)."""
    dialog = _open_add_connection_form(browser)
    dialog.find_element(By.NAME, "connection_id").send_keys(conn_id)
    dialog.find_element(By.NAME, "host").send_keys(host)
    dialog.find_element(By.NAME, "password").send_keys(api_key)
    dialog.find_element(By.NAME, "port").send_keys(port)
    save = browser.find(".//button[normalize-space(.)='Save'][not(@disabled)]", "an enabled Save button", dialog)
    save.click()
    browser.wait(lambda d: not d.find_elements(By.XPATH, "//*[@role='dialog']"), "the dialog to close")
    _connection_row(browser, conn_id)


def _connection_row(browser: Browser, conn_id: str) -> WebElement:
    return browser.find(f"//tbody/tr[td[normalize-space(.)='{conn_id}']]", f"the row of {conn_id}")


#: The (title, description) of the newest toast, read in one go: a toast closes after a few seconds, and
#: on a busy machine element-by-element reads can outlast it.
_READ_TOAST = """
const roots = document.querySelectorAll("[data-scope='toast'][data-part='root']");
if (!roots.length) { return null; }
const toast = roots[roots.length - 1];
const part = (name) => (toast.querySelector(`[data-part='${name}']`) || {}).textContent || "";
return [part("title").trim(), part("description").trim()];
"""


def _test_connection(browser: Browser, conn_id: str) -> tuple[str, str]:
    """Press Test in the connection's row; the (title, description) of the toast that answers."""
    browser.open("/connections")  # a fresh page: no toast of an earlier action is left
    row = _connection_row(browser, conn_id)
    row.find_element(By.XPATH, ".//button[@aria-label='Test Connection']").click()
    title, description = browser.wait(lambda d: d.execute_script(_READ_TOAST), "the toast answering Test")
    browser.snapshot(f"tested {conn_id}")
    return str(title), str(description)


# -- the tests -------------------------------------------------------------------------------------


def test_the_connection_form_shows_the_kling_labels_and_the_test_button_accepts_the_key(
    browser: Browser, sandbox: SandboxProcess, api_key: str
) -> None:
    dialog = _open_add_connection_form(browser)
    labels = {name: _label_of(browser, dialog.find_element(By.NAME, name)) for name in ("host", "password", "port")}
    assert labels == {"host": "Base URL", "password": "API key", "port": "Port (of the base URL)"}
    assert dialog.find_element(By.NAME, "host").get_attribute("placeholder") == "https://api.novita.ai"
    assert dialog.find_element(By.NAME, "port").get_attribute("placeholder") == "443"
    assert not dialog.find_elements(By.NAME, "login")
    assert not dialog.find_elements(By.NAME, "schema")
    browser.find(".//button[normalize-space(.)='Extra Fields']", "the Extra Fields section", dialog).click()
    extra_labels = browser.wait(
        lambda d: (
            {
                label.text.strip()
                for label in dialog.find_elements(By.XPATH, ".//label")
                if label.is_displayed() and label.text.strip()
            }
            >= {
                "HTTP timeout (seconds)",
                "Max Task Result polls per second (per triggerer process)",
                "Allow a plain-HTTP base URL that is not loopback",
            }
        ),
        "the labels of the extra fields",
    )
    assert extra_labels

    _add_connection(browser, "kling_browser", host=sandbox.url, api_key=api_key, port=str(sandbox.port))
    browser.snapshot("connection list")
    title, message = _test_connection(browser, "kling_browser")

    assert (title, message) == ("Test Connection Successful", f"Connected to {sandbox.url}: the API key is accepted.")
    # The saved connection, opened again, shows no key.
    _connection_row(browser, "kling_browser").find_element(By.XPATH, ".//button[@aria-label='Edit Connection']").click()
    browser.find("//*[@role='dialog']//input[@name='host']", "the Edit Connection dialog")
    browser.snapshot("edit dialog")
    browser.assert_no_secret(api_key)


def test_the_test_button_reports_a_refused_key_with_the_vendor_reason(
    browser: Browser, sandbox: SandboxProcess, api_key: str
) -> None:
    _add_connection(browser, "kling_browser_refused", host=sandbox.url, api_key=BAD_KEY, port=str(sandbox.port))

    title, message = _test_connection(browser, "kling_browser_refused")

    assert title == "Test Connection Failed"
    assert message.startswith("The API key was refused: ")
    assert "INVALID_API_KEY" in message
    browser.assert_no_secret(BAD_KEY, api_key)


def test_mapped_generations_are_named_by_their_prompt_and_link_to_their_video(
    browser: Browser, airflow_stack: AirflowStack, sandbox: SandboxProcess, api_key: str
) -> None:
    # review=False: no person approves in this test (the review step has tests/e2e/test_review_step.py).
    result = airflow_stack.run(PIPELINE, conf={"prompts": PROMPTS, "review": False})
    assert result.state == "success", result
    names = {ti.map_index: ti.raw.get("rendered_map_index") for ti in result.task_instances if ti.task_id == "generate"}
    assert names == {0: "A hummingbird hovers at a red flower…", 1: "a fox in the snow"}

    run_path = f"/dags/{PIPELINE}/runs/{result.run_id}/tasks/generate"
    browser.open(f"{run_path}/mapped")
    for name in names.values():
        browser.find(f"//a[normalize-space(.)='{name}']", f"the mapped instance named {name!r}")
    browser.snapshot("mapped instances")

    browser.open(f"{run_path}/mapped/1")
    browser.find("//*[normalize-space(text())='a fox in the snow']", "the instance's name in its header")
    browser.snapshot("task instance")
    browser.find(
        "//button[normalize-space(.)='Details'] | //a[normalize-space(.)='Details']", "the Details tab"
    ).click()
    link = browser.find("//a[normalize-space(.)='Kling video']", "the Kling video extra link")
    browser.snapshot("task instance details")
    href = link.get_attribute("href") or ""
    kling_task_id = airflow_stack.xcom(PIPELINE, result.run_id, "generate", "kling_task_id", map_index=1)

    # Stored as a file on the worker: the link is the vendor's signed URL, while it is valid.
    assert href == airflow_stack.extra_links(PIPELINE, result.run_id, "generate", map_index=1)["Kling video"]
    assert href.startswith(f"{sandbox.url}/sandbox/media/{kling_task_id}.mp4?expires=")
    assert link.get_attribute("target") == "_blank"
    browser.driver.get(href)
    content_type = browser.wait(lambda d: d.execute_script("return document.contentType"), "the video to load")
    assert content_type == "video/mp4"
    browser.assert_no_secret(api_key)
