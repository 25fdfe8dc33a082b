"""Firefox ESR (Debian `firefox-esr`, driven by geckodriver) against `tern serve`: the demo page,
a microphone fed from a speech WAV through a PulseAudio null sink, one turn echoed back, and the
call held for 35 s, which needs Tern to answer Firefox's consent-freshness checks."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.firefox.service import Service

from browser import report_turn, run_echo_turn, wait_for

GECKODRIVER = shutil.which("geckodriver") or str(Path.home() / ".cargo" / "bin" / "geckodriver")
FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
MIC_DESCRIPTION = "TernMic"


@pytest.fixture()
def pulse(out_dir):
    """A private PulseAudio server with a null sink; its monitor is Firefox's microphone."""
    runtime = Path(tempfile.mkdtemp(prefix="tern-pulse-"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    log = open(out_dir / "pulseaudio.log", "w")
    proc = subprocess.Popen(
        [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "-L", "module-native-protocol-unix",
            "-L", f"module-null-sink sink_name=tern_mic sink_properties=device.description={MIC_DESCRIPTION}",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 10
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"pulseaudio did not start; see {out_dir / 'pulseaudio.log'}")
        time.sleep(0.1)
    yield env
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture()
def firefox(pulse, out_dir):
    opts = webdriver.FirefoxOptions()
    opts.binary_location = FIREFOX
    opts.add_argument("-headless")
    for key, value in {
        "media.navigator.permission.disabled": True,
        "media.navigator.streams.fake": False,
        # The capture device is the null sink's monitor, matched by name.
        "media.audio_loopback_dev": f"Monitor of {MIC_DESCRIPTION}",
        "media.peerconnection.ice.loopback": True,
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        "app.update.enabled": False,
        "browser.shell.checkDefaultBrowser": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.enabled": False,
        "network.captive-portal-service.enabled": False,
        "extensions.update.enabled": False,
    }.items():
        opts.set_preference(key, value)
    service = Service(GECKODRIVER, log_output=str(out_dir / "geckodriver.log"), env=pulse)
    driver = webdriver.Firefox(options=opts, service=service)
    yield driver
    driver.quit()


def test_firefox_demo_page_echo_turn_and_35s_call(tern, firefox, pulse, speech_wav):
    # Feed the speech into the null sink a moment after the page starts capturing.
    player = subprocess.Popen(
        ["sh", "-c", f"sleep 2; paplay --device=tern_mic {speech_wav}"], env=pulse
    )
    try:
        connect_ms, state = run_echo_turn(firefox, tern.base)
        connected_at = time.time() - firefox.execute_script(
            "return (performance.now() - window.tern.connectedAt) / 1000"
        )
    finally:
        player.wait(timeout=30)
    # Hold the call past 35 s: Firefox drops it if consent-freshness checks go unanswered.
    while time.time() - connected_at < 36:
        wait_for(firefox, "window.tern.state === 'connected'", 1, "still connected")
        time.sleep(1)
    report_turn(
        "firefox",
        connect_ms,
        state,
        held_s=round(time.time() - connected_at),
    )
    assert tern.metric("tern_sessions") == 1
