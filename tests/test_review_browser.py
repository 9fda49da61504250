"""The review page in a real browser (Debian's headless chromium driven by selenium): five readings corrected
by typing, one marked illegible, a reload - and the data set on disk holds exactly those corrections.

`REVIEW_SCREENSHOTS=DIR` also writes the screenshots of docs/review.md into DIR (docs/images).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from review_fixtures import dataset_rows, interrupt, start_server, write_predictions

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CORRECTIONS = ["নদী", "পাখি", "গাছ", "আমার", "বাংলা"]


def _browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"the browser test needs Debian's chromium and chromium-driver ({', '.join(missing)} missing)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": .ci/run installs them", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,900",
                     "--lang=bn"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _shoot(driver, name: str) -> None:
    folder = os.environ.get("REVIEW_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"review-{name}.png"))


def test_correct_five_mark_one_illegible_reload(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    predictions = write_predictions(tmp_path)
    process, url = start_server(str(predictions), "--out", "ds", cwd=tmp_path)
    driver = _browser()
    try:
        driver.get(url)
        box = driver.find_element(By.ID, "text")
        progress = driver.find_element(By.ID, "progress")
        _wait(lambda: progress.text.startswith("0 of 10 reviewed"), "the progress")
        _wait(lambda: driver.execute_script("return document.getElementById('crop').naturalWidth > 0"), "the crop")
        _shoot(driver, "page")
        shown = []
        for count, word in enumerate(CORRECTIONS, start=1):
            source = driver.find_element(By.ID, "source").text
            assert box.get_attribute("value") and driver.execute_script(
                "const t = document.getElementById('text'); return t.selectionEnd - t.selectionStart") == len(
                box.get_attribute("value")), "the reading is pre-filled and selected"
            shown.append(source)
            box.send_keys(word)  # typing replaces the selected reading
            box.send_keys(Keys.ENTER)
            _wait(lambda: progress.text.startswith(f"{count} of 10 reviewed, {count} changed"), f"save {count}")
            _wait(lambda: driver.find_element(By.ID, "source").text != source, "the next word")
        illegible_source = driver.find_element(By.ID, "source").text
        box.send_keys(Keys.ALT, "i")
        _wait(lambda: progress.text.startswith("6 of 10 reviewed, 5 changed, 1 illegible"), "illegible")
        driver.refresh()
        progress = driver.find_element(By.ID, "progress")
        _wait(lambda: progress.text.startswith("6 of 10 reviewed, 5 changed, 1 illegible"), "the progress after reload")
        assert driver.find_element(By.ID, "command").text.startswith("banglaocr train --recipe adapt_reviewed")
        _shoot(driver, "progress")
    finally:
        driver.quit()
        interrupt(process)
    rows = dataset_rows(tmp_path / "ds")
    assert sorted((row["source"], row["text"]) for row in rows) == sorted(zip(shown, CORRECTIONS))
    assert all(row["reviewed"] is True and row["model_reading"] != row["text"] for row in rows)
    state = json.loads((tmp_path / "ds" / "review-state.json").read_text(encoding="utf-8"))
    assert state["items"][illegible_source]["state"] == "illegible"
    assert illegible_source not in {row["source"] for row in rows}
