"""Screenshot of a `bench report` page in headless Chromium (the README's docs/report.png).

    python scripts/report-screenshot.py results/report.html docs/report.png

Videos are paused at SEEK seconds so the picture shows the scene rather than black first frames; the PNG is
reduced to 256 colours (a full page of video frames is ~1.4 MB in true colour, ~0.5 MB so).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SEEK = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1300)
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--hide-scrollbars", f"--window-size={args.width},1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        browser.get(args.page.resolve().as_uri())
        browser.execute_script(f"document.querySelectorAll('video').forEach(v => {{ v.currentTime = {SEEK}; }})")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(args.width, height)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and browser.execute_script(
                "return [...document.querySelectorAll('video')].some(v => v.seeking || v.readyState < 2)"):
            time.sleep(0.2)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(args.png))
    finally:
        browser.quit()
    Image.open(args.png).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(args.png, optimize=True)


if __name__ == "__main__":
    main()
