"""`bench report`: the page's sections, and a real page in headless Chromium (table numbers, videos that play)."""

import os
import shutil
import time

import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from bench.html_report import ComparisonSection, render_report
from bench.report import leaderboard, leaderboard_of
from bench.runs import read_runs

from run_folders import write_run
from test_stats import wilson_by_hand


def fake_run(root, run_id, policy, successes, videos=False):
    write_run(root, run_id, {"PickCube-v1": successes}, preset=policy, created=run_id, videos=videos)


def test_page_sections_and_comparison_hook(tmp_path):
    fake_run(tmp_path, "1", "a", [True, False, True, True], videos=True)
    fake_run(tmp_path, "2", "b", [False, False, False, False])
    board = leaderboard_of(read_runs(tmp_path))
    verdicts = pd.DataFrame({"task": ["PickCube-v1", "mean"], "B - A": ["-75.0% [-95.1, -17.7]", "-75.0%"],
                             "verdict": ["worse", "worse"]})
    page = render_report(board, tmp_path / "report.html",
                         [ComparisonSection("b (B) vs a (A)", verdicts, ("n: paired episodes",))])
    assert "75.0% [30.1, 95.4] n=4" in page and "0.0% [0.0, 49.0] n=4" in page
    assert page.count("data:image/svg+xml;base64,") == 1  # one plot per task
    assert '<h3>b (B) vs a (A)</h3>' in page and '<td class="worse">worse</td>' in page
    assert 'src="1/videos/PickCube-v1/ep0_success.mp4"' in page and page.count("<video") == 4
    assert "Comparisons" not in render_report(board, tmp_path / "report.html")
    # videos are linked relative to the page, wherever it is written
    assert 'src="../1/videos/PickCube-v1/ep0_success.mp4"' in render_report(board, tmp_path / "pages" / "r.html")


def chromium():
    """Headless Chromium through the system chromedriver (no download); fails on CI if it is missing."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        message = "chromium and chromedriver are needed: bash scripts/install-system-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def expected_cell(episodes: pd.DataFrame) -> str:
    n, k = len(episodes), int(episodes["success_once"].sum())
    low, high = wilson_by_hand(k, n)
    return f"{100 * k / n:.1f}% [{100 * max(low, 0):.1f}, {100 * min(high, 1):.1f}] n={n}"


@pytest.mark.timeout(1200)
def test_report_in_chromium_shows_the_numbers_and_plays_the_videos(bench, tmp_path, short_tasks):
    browser = chromium()  # before the runs: a missing browser fails in seconds, not minutes
    try:
        for policy in ("expert", "zero"):
            code, text = bench("run", "--policy", policy, "--tasks", "PickCube-v1", "--episodes", "2",
                               "--num-envs", "2", "--video", "2", "--output", str(tmp_path), "--run-id", policy,
                               "--tasks-dir", str(short_tasks))
            assert code == 0, text
        code, text = bench("report", str(tmp_path))
        assert code == 0, text
        page = tmp_path / "report.html"
        assert f"report: {page}" in text

        browser.get(page.as_uri())
        header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#leaderboard thead th")]
        rows = {cells[0]: dict(zip(header, cells)) for cells in (
            [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr"))}
        assert sorted(rows) == ["expert", "zero"]
        for policy in rows:
            episodes = pd.read_parquet(tmp_path / policy / "episodes.parquet")
            assert rows[policy]["PickCube-v1"] == expected_cell(episodes)
            # each recorded episode is on the page, labelled with its outcome from the records
            for record in episodes.itertuples():
                outcome = "success" if record.success_once else "failure"
                assert (tmp_path / policy / record.video).is_file()
                assert record.video.endswith(f"ep{record.episode}_{outcome}.mp4")
                caption = browser.find_element(By.XPATH, f"//figure[video[@src='{policy}/{record.video}']]")
                assert caption.get_attribute("class") == outcome
                assert caption.text == f"{policy} · episode {record.episode} · {outcome}"
        assert rows["expert"]["PickCube-v1"].startswith("100.0%")  # the expert solves PickCube

        # the compare verdict between the two policies: expert 2/2, zero 0/2 -> exact McNemar p = 2 * 1/4 = 0.5
        assert browser.find_element(By.XPATH, "//h3[following-sibling::table[@class='comparison']]").text == \
            "zero (B) vs expert (A)"
        header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.comparison thead th")]
        (row,) = [dict(zip(header, [td.text for td in tr.find_elements(By.TAG_NAME, "td")]))
                  for tr in browser.find_elements(By.CSS_SELECTOR, "table.comparison tbody tr")]
        assert (row["task"], row["A/B only"], row["McNemar p"], row["verdict"]) == \
            ("PickCube-v1", "2/0", "0.5", "no detectable difference")

        videos = browser.find_elements(By.TAG_NAME, "video")
        assert len(videos) == 4
        browser.execute_script("document.querySelectorAll('video').forEach(v => v.play())")
        deadline = time.monotonic() + 30
        states = []
        while time.monotonic() < deadline:
            states = browser.execute_script(
                "return [...document.querySelectorAll('video')].map(v => [v.currentTime, v.readyState, v.error])")
            if all(t > 0 and ready >= 2 for t, ready, _ in states):
                break
            time.sleep(0.25)
        assert all(t > 0 and ready >= 2 and error is None for t, ready, error in states), states
        assert browser.find_element(By.CSS_SELECTOR, ".plots img").size["width"] > 100  # the SVG plot decodes
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


def test_the_newest_run_of_a_policy_counts(tmp_path):
    fake_run(tmp_path, "2026-01-01", "a", [False, False])
    fake_run(tmp_path, "2026-01-02", "a", [True, True])
    (table,) = leaderboard_of(read_runs(tmp_path)).tables
    assert set(table.episodes["run_dir"]) == {tmp_path / "2026-01-02"}
    assert leaderboard(tmp_path)["success_once"].tolist() == [1.0]


def test_report_command_writes_the_page_and_opens_it(bench, tmp_path, monkeypatch):
    fake_run(tmp_path / "results", "1", "a", [True])
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = tmp_path / "site" / "index.html"
    code, text = bench("report", str(tmp_path / "results"), "--out", str(out), "--open")
    assert code == 0, text
    assert "100.0% [20.7, 100.0] n=1" in out.read_text() and opened == [out.resolve().as_uri()]


def test_report_reads_each_run_folder_once(bench, tmp_path, monkeypatch):
    """Leaderboard, plots, comparisons and videos all come from one reading of each run folder."""
    import bench.runs as runs

    for run_id, policy in (("1", "a"), ("2", "b"), ("3", "c")):
        fake_run(tmp_path, run_id, policy, [True, False], videos=True)
    reads = []
    for name in ("read_manifest", "read_episodes"):
        original = getattr(runs, name)
        monkeypatch.setattr(runs, name, lambda path, original=original, name=name:
                            reads.append((name, path.name)) or original(path))
    code, text = bench("report", str(tmp_path))
    assert code == 0, text
    assert sorted(reads) == sorted((name, run) for name in ("read_episodes", "read_manifest") for run in "123")
    assert (tmp_path / "report.html").read_text().count("<h3>") >= 3  # the three comparisons were made
