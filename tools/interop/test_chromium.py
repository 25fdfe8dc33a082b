"""Headless Chromium (Debian `chromium` + `chromium-driver`) against `tern serve`: the demo page,
a fake microphone fed from a speech WAV, one turn echoed back."""

import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from browser import report_turn, run_echo_turn

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture()
def chromium(speech_wav):
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
        # Chromium gathers no candidate at all on a loopback-only path without this; Tern itself
        # advertises 127.0.0.1 unchanged (see the README's interop notes).
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1000",
    ]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_chromium_demo_page_echo_turn(tern, chromium, out_dir):
    connect_ms, state = run_echo_turn(chromium, tern.base, screenshot=out_dir / "demo-chromium.png")
    assert state["energy"] > 0, f"getStats totalAudioEnergy stayed 0: {state}"
    report_turn("chromium", connect_ms, state)
    assert tern.metric("tern_sessions") == 1
