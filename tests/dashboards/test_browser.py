"""Every dashboard page in a real headless Chromium: the charts render (plotly drew its SVG), the
console has no errors, and a screenshot of each page is saved for people to look at.

Chromium and ChromeDriver come from Debian (`chromium`, `chromium-driver`); `.ci/run` installs them.
Screenshots go to $WARDEN_SCREENSHOTS (default: the test's temporary directory)."""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import PASSWORD, WINDOW, LiveWarden

FIGURES = {"overview": 2, "latency": 3, "cost": 4, "drift": 3, "behaviour": 9, "experiments": 2, "audit": 0}


def browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # Offline machine: nothing in the browser may try to reach the network.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--window-size=1366,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_pages_render_in_chromium(seeded: LiveWarden, tmp_path: Path) -> None:
    from analytics.access import Binding
    from proxy.identity.directory import Change

    seeded.services.directory.create_user(
        "analyst-ann", PASSWORD, Change("cli:test", "default"), (Binding("auditor"),)
    )
    shots = Path(os.environ.get("WARDEN_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    root = seeded.base_url.removesuffix("/v1")
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"{root}/login")
        driver.find_element(By.ID, "username").send_keys("analyst-ann")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 20).until(lambda d: "Signed in as" in d.page_source)
        query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in WINDOW.items())
        for page, expected in FIGURES.items():
            driver.get(f"{root}/dashboards/{page}?{query}")
            WebDriverWait(driver, 30).until(
                lambda d, n=expected: (
                    d.execute_script("return document.querySelectorAll('.figure .main-svg').length") >= n
                )
            )
            drawn = driver.execute_script("return document.querySelectorAll('.figure .main-svg').length")
            assert drawn >= expected, page
            titles = driver.execute_script(
                "return Array.from(document.querySelectorAll('.figure .gtitle')).map(e => e.textContent)"
            )
            assert len(titles) == expected, (page, titles)
            driver.save_screenshot(str(shots / f"{page}.png"))
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert errors == [], (page, errors)
        assert (shots / "overview.png").stat().st_size > 10_000
    finally:
        driver.quit()
