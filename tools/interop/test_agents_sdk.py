"""OpenAI's official `@openai/agents-realtime` SDK (its `OpenAIRealtimeWebRTC` transport) in
headless Chromium, on a page served from another origin than Tern's, exactly as an app uses it
with only `baseUrl` changed: the SDK's preflighted POST (Authorization + SDK headers), the call id
read from `Location`, `connect()` resolved by `session.updated`, the reply heard, and
`interrupt()` answered by `output_audio_buffer.cleared`. Tern binds the wildcard and Chromium runs
without --allow-loopback-in-peer-connection (its default candidates are the host's addresses)."""

import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from browser import headless_chromium
from conftest import ROOT, free_port, report

SRC = ROOT / "tools" / "interop" / "agents-sdk"


@pytest.fixture(scope="session")
def sdk_page(out_dir):
    """Installs the pinned SDK from npm and bundles the page with esbuild."""
    site = out_dir / "agents-sdk"
    site.mkdir(exist_ok=True)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SRC, check=True
    )
    subprocess.run(
        [str(SRC / "node_modules" / ".bin" / "esbuild"), "entry.js", "--bundle",
         "--format=iife", "--platform=browser", "--log-level=warning",
         f"--outfile={site / 'bundle.js'}"],
        cwd=SRC, check=True,
    )
    shutil.copy(SRC / "index.html", site / "index.html")
    return site


@pytest.fixture()
def app_origin(sdk_page):
    """The app's own origin: a plain static server on another port."""
    port = free_port()
    handler = functools.partial(
        type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
        directory=str(sdk_page),
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()



@pytest.fixture()
def chromium(speech_wav):
    with headless_chromium(speech_wav) as driver:
        yield driver


def mint_token(base):
    req = urllib.request.Request(
        base + "/v1/realtime/client_secrets",
        data=json.dumps({"session": {"type": "realtime", "model": "gpt-realtime"}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["value"]


def test_agents_realtime_sdk_cross_origin(tern_wildcard, app_origin, chromium):
    key = mint_token(tern_wildcard.base)
    chromium.get(f"{app_origin}/index.html?base={tern_wildcard.base}&key={key}")
    deadline = time.time() + 60
    result = None
    while time.time() < deadline:
        result = chromium.execute_script("return window.result")
        if result and result["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert result and result["state"] == "done", result
    events = result["events"]
    assert events.index("session.created") < events.index("session.updated"), events
    assert "input_audio_buffer.speech_started" in events, events
    assert result["callId"].startswith("rtc_"), result
    assert result["energy"] > 0, f"the reply was not heard: {result}"
    report(
        "agents-realtime-sdk",
        connect_ms=round(result["connectMs"]),
        interrupt_to_cleared_ms=round(result["clearedMs"]),
    )
