"""Headless Chromium (Debian `chromium` + `chromium-driver`) against `tern serve`: the demo page,
a fake microphone fed from a speech WAV, one turn echoed back."""

import pytest

from browser import headless_chromium, report_turn, run_echo_turn


@pytest.fixture()
def chromium(speech_wav):
    # Chromium gathers no candidate at all on a loopback-only path without the loopback flag; Tern
    # itself advertises 127.0.0.1 unchanged (see the README's interop notes).
    flags = ["--allow-loopback-in-peer-connection", "--window-size=1100,1400"]
    with headless_chromium(speech_wav, flags) as driver:
        yield driver


def test_chromium_demo_page_echo_turn(tern, chromium, out_dir):
    connect_ms, state = run_echo_turn(chromium, tern.base, screenshot=out_dir / "demo-chromium.png")
    assert state["energy"] > 0, f"getStats totalAudioEnergy stayed 0: {state}"
    report_turn("chromium", connect_ms, state)
    assert tern.metric("tern_sessions") == 1
    # The turn's breakdown reached /metrics too: one answered turn, one sample per stage + total.
    assert tern.metric("tern_turns_total") == 1
    assert tern.metric("tern_turn_stage_seconds_count") == 5
