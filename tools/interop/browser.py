"""Drives the demo page in a real browser and checks one full echo turn."""

import contextlib
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from conftest import report


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def headless_chromium(speech_wav, extra_flags=()):
    """Debian's Chromium, headless over WebDriver, with a fake microphone playing `speech_wav` once
    and a fresh profile; offline (no background networking)."""
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
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        *extra_flags,
    ]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, predicate_js, timeout, what):
    """Polls a JS expression over `window.tern` until it is truthy; fails with the page state."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.execute_script(f"return !!({predicate_js});"):
            return
        time.sleep(0.1)
    state = driver.execute_script("return JSON.stringify(window.tern)")
    raise AssertionError(f"timed out waiting for {what}; page state: {state}")


def open_demo_page(driver, base_url, timeout=10):
    """Loads the demo page and waits for its start button; if it never shows, fails with what the
    browser showed instead (what a CI run lacked; its likely cause, ICE-TCP given the HTTP port, is fixed)."""
    driver.get(base_url + "/")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.find_elements("id", "start"):
            return
        time.sleep(0.1)
    shown = {"url": driver.current_url, "title": driver.title,
             "source": driver.page_source[:2000]}
    raise AssertionError(f"the demo page at {base_url}/ never showed its start button: {shown}")


def run_echo_turn(driver, base_url, screenshot=None):
    """Opens the demo page, starts a call, and waits for one turn and its echo.

    Returns the figures measured by the page: connect time and turn latencies (ms)."""
    open_demo_page(driver, base_url)
    driver.find_element("id", "start").click()
    wait_for(driver, "window.tern.state === 'connected'", 20, "connected")
    # Measured in the page: createOffer -> connectionState "connected".
    connect_ms = driver.execute_script("return window.tern.connectMs")
    wait_for(driver, "window.tern.dc === 'open'", 10, "data channel open")
    wait_for(
        driver,
        "window.tern.events.includes('input_audio_buffer.speech_stopped')",
        20,
        "speech_stopped",
    )
    events = driver.execute_script("return window.tern.events")
    assert "session.created" in events, events
    started = events.index("input_audio_buffer.speech_started")
    stopped = events.index("input_audio_buffer.speech_stopped")
    assert started < stopped, events
    # The reply: playback starts, energy arrives, the page's level meter hears it.
    wait_for(driver, "window.tern.turns.length > 0 && window.tern.turns[0].audibleMs != null",
             15, "reply audio heard by the page")
    # Tern's own breakdown of that turn (tern.turn.latency), sent as the reply started.
    wait_for(driver, "window.tern.turns[0].server", 5, "the tern.turn.latency event")
    if screenshot is not None:
        time.sleep(0.6)
        driver.save_screenshot(str(screenshot))
    wait_for(driver, "window.tern.events.includes('output_audio_buffer.stopped')", 20,
             "output_audio_buffer.stopped")
    state = driver.execute_script(
        "return {turn: window.tern.turns[0], server: window.tern.turns[0].server,"
        " packets: window.tern.inboundPackets,"
        " energy: window.tern.inboundEnergy, level: window.tern.maxOutLevel,"
        " events: window.tern.events}"
    )
    events = state["events"]
    assert events.index("output_audio_buffer.started") > stopped, events
    assert state["packets"] > 50, state
    assert state["level"] > 0.01, state
    server = state["server"]
    stages = [server["stages_us"][s] for s in
              ("end_of_speech", "speech_stopped_sent", "agent_first_frame", "first_packet_sent")]
    assert sum(stages) == server["total_us"], server
    # The server's span (last voiced packet in -> first reply packet out) lies inside what the
    # page measured (last voiced sample at the microphone -> first reply packet counted); the page
    # judges voice by level and polls getStats, so allow it a couple of frames either way.
    assert server["total_us"] / 1000 <= state["turn"]["latencyMs"] + 60, state
    return connect_ms, state


def report_turn(client, connect_ms, state, **extra):
    """Prints and records the figures the page measured for one client."""
    turn = state["turn"]
    report(
        client,
        connect_ms=round(connect_ms),
        turn_latency_ms=round(turn["latencyMs"]),
        audible_ms=round(turn["audibleMs"]),
        after_speech_stopped_ms=round(turn["afterStoppedMs"]),
        inbound_packets=state["packets"],
        server_end_rule=state["server"]["end_rule"],
        server_stages_us=state["server"]["stages_us"],
        server_total_us=state["server"]["total_us"],
        **extra,
    )
