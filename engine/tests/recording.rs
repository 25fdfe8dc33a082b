//! Call recording on a real engine: both directions of a call as received and as sent, with the
//! call's length, in Ogg Opus and in WAV; a per-session opt-in from a server-set session; a disk
//! budget that stops recording and never the call.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::udp_client::UdpClient;
use common::{http, http_with, load_wav, metric};
use tern_engine::agent::AgentKind;
use tern_engine::core::recording::RecordFormat;
use tern_engine::shell::recorder::RecordSettings;
use tern_engine::shell::runtime::Engine;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn engine(dir: &Path, max_bytes: u64, all: Option<RecordFormat>) -> Engine {
    common::engine::start_with(1, 8, AgentKind::Echo, |c| {
        c.record = Some(RecordSettings {
            dir: dir.to_path_buf(),
            max_bytes,
        });
        c.shard.session.record = all;
        c.shard.session.record_format = Some(all.unwrap_or(RecordFormat::Ogg));
    })
}

/// One echoed turn, then a hangup. Returns the client and its call id.
fn call(e: &Engine, session: Option<&str>) -> (UdpClient, String) {
    call_as(e, session, None, None)
}

/// The same, presenting `bearer` (a server key or a token); `server_key` hangs up.
fn call_as(
    e: &Engine,
    session: Option<&str>,
    bearer: Option<&str>,
    server_key: Option<&str>,
) -> (UdpClient, String) {
    let mut c = UdpClient::connect_as(e.http, load_wav("hello-24k.wav").1, session, bearer);
    assert!(c.run_until(Duration::from_secs(20), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
    }));
    let id = c.call_id();
    let auth = server_key.map(|k| format!("Bearer {k}"));
    let headers: Vec<_> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let path = format!("/v1/realtime/calls/{id}");
    assert_eq!(http_with(e.http, "DELETE", &path, &headers, b"").0, 204);
    (c, id)
}

/// Waits until `path` exists and `done` holds for its bytes (the recorder closed the file).
fn finished(path: &Path, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let t0 = Instant::now();
    loop {
        if let Ok(b) = std::fs::read(path) {
            if done(&b) {
                return b;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} not finished",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An Ogg Opus file: (length in seconds from its granule, audio packets, audible 20 ms frames).
fn read_ogg(bytes: &[u8]) -> Option<(f64, usize, usize)> {
    let mut r = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
    let head = r.read_packet().ok()??;
    assert!(head.data.starts_with(b"OpusHead"));
    let _tags = r.read_packet().ok()??;
    let mut dec =
        audiopus::coder::Decoder::new(audiopus::SampleRate::Hz48000, audiopus::Channels::Mono)
            .unwrap();
    let (mut packets, mut audible, mut granule, mut ended) = (0, 0, 0, false);
    while let Some(p) = r.read_packet().ok()? {
        granule = p.absgp_page();
        ended = p.last_in_stream();
        if p.data.len() <= 1 {
            continue; // the end-of-stream marker, or silence filling a gap
        }
        packets += 1;
        let mut pcm = [0i16; 5760];
        let pkt = audiopus::packet::Packet::try_from(&p.data[..]).unwrap();
        let out = audiopus::MutSignals::try_from(&mut pcm[..]).unwrap();
        let n = dec.decode(Some(pkt), out, false).unwrap();
        let rms = (pcm[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / n as f64).sqrt();
        if rms > 300.0 {
            audible += 1;
        }
    }
    ended.then_some((granule as f64 / 48_000.0, packets, audible))
}

/// The seconds of a finished 16-bit PCM WAV file (sizes patched into its header).
fn wav_seconds(b: &[u8]) -> Option<f64> {
    let data = u32::from_le_bytes(b.get(40..44)?.try_into().ok()?);
    let rate = u32::from_le_bytes(b.get(24..28)?.try_into().ok()?);
    (data > 0 && b.len() == 44 + data as usize).then(|| f64::from(data) / 2.0 / f64::from(rate))
}

/// What the client saw: seconds it sent audio, first and last reply packet after it connected.
fn client_spans(c: &UdpClient) -> (f64, f64, f64) {
    let connected = c.client.connected_at.unwrap();
    let first = c.client.received.first().unwrap().0 - connected;
    let last = c.client.received.last().unwrap().0 - connected;
    (
        c.client.frames_sent as f64 * 0.02,
        first.as_secs_f64(),
        last.as_secs_f64() + 0.02,
    )
}

#[test]
fn a_recorded_call_plays_back_with_its_length_both_ways() {
    let dir = temp_dir("ogg");
    let e = engine(&dir, 100 << 20, Some(RecordFormat::Ogg));
    let (c, id) = call(&e, None);
    let (sent_s, _first_reply_s, last_reply_s) = client_spans(&c);

    let done = |b: &[u8]| read_ogg(b).is_some();
    let (in_s, in_packets, in_audible) =
        read_ogg(&finished(&dir.join(format!("{id}-in.ogg")), done)).unwrap();
    let (out_s, out_packets, out_audible) =
        read_ogg(&finished(&dir.join(format!("{id}-out.ogg")), done)).unwrap();
    println!(
        "in: {in_s:.3} s, {in_packets} packets, {in_audible} audible (client sent {sent_s:.3} s); \
         out: {out_s:.3} s, {out_packets} packets, {out_audible} audible (client got {} packets, {} audible, last at {last_reply_s:.3} s)",
        c.client.received.len(),
        c.client.audible_frames()
    );
    // Both files start when the call connected; each ends with its last packet.
    assert!((in_s - sent_s).abs() <= 0.1, "in {in_s} s, sent {sent_s} s");
    assert!(
        (out_s - last_reply_s).abs() <= 0.1,
        "out {out_s} s, last reply packet at {last_reply_s} s"
    );
    // Every packet, as it travelled.
    assert!(in_packets.abs_diff(c.client.frames_sent as usize) <= 3);
    assert!(out_packets.abs_diff(c.client.received.len()) <= 2);
    assert!(out_audible.abs_diff(c.client.audible_frames()) <= 3);
    assert!(in_audible >= 100, "the spoken turn is in the file");

    let m = metrics(&e);
    assert_eq!(
        metric(&m, "tern_recordings_total", "outcome=\"completed\""),
        1.0
    );
    assert_eq!(metric(&m, "tern_recording_stopped", ""), 0.0);
    e.stop();
    e.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wav_recordings_decode_opus_off_the_media_cores() {
    let dir = temp_dir("wav");
    let e = engine(&dir, 100 << 20, Some(RecordFormat::Wav));
    let (c, id) = call(&e, None);
    let (sent_s, _, last_reply_s) = client_spans(&c);
    let done = |b: &[u8]| wav_seconds(b).is_some();
    let in_s = wav_seconds(&finished(&dir.join(format!("{id}-in.wav")), done)).unwrap();
    let out_s = wav_seconds(&finished(&dir.join(format!("{id}-out.wav")), done)).unwrap();
    assert!((in_s - sent_s).abs() <= 0.1, "in {in_s} s, sent {sent_s} s");
    assert!(
        (out_s - last_reply_s).abs() <= 0.1,
        "out {out_s} s, last reply at {last_reply_s} s"
    );
    e.stop();
    e.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_calls_whose_server_set_session_asks_are_recorded() {
    let dir = temp_dir("optin");
    let e = engine(&dir, 100 << 20, None);
    let (_, plain) = call(&e, None);
    let (_, asked) = call(&e, Some(r#"{"type":"realtime","tern":{"record":"ogg"}}"#));
    let done = |b: &[u8]| read_ogg(b).is_some();
    finished(&dir.join(format!("{asked}-in.ogg")), done);
    finished(&dir.join(format!("{asked}-out.ogg")), done);
    assert!(!dir.join(format!("{plain}-in.ogg")).exists());
    assert!(!dir.join(format!("{plain}-out.ogg")).exists());
    e.stop();
    e.join();

    // A node without --record-dir refuses a session that asks, clearly.
    let e = common::engine::start(1, 4);
    let (s, _, body) = http(
        e.http,
        "POST",
        "/v1/realtime/client_secrets",
        Some("application/json"),
        br#"{"session":{"type":"realtime","tern":{"record":true}}}"#,
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("--record-dir"), "{body}");
    e.stop();
    e.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_token_minted_by_the_server_turns_recording_on_and_a_browser_form_cannot() {
    let dir = temp_dir("token");
    let key = "sk-test-recording";
    let e = common::engine::start_with(1, 8, AgentKind::Echo, |c| {
        c.api_keys = vec![key.to_string()];
        c.record = Some(RecordSettings {
            dir: dir.clone(),
            max_bytes: 100 << 20,
        });
        c.shard.session.record_format = Some(RecordFormat::Ogg);
    });
    let mint = |session: &str| {
        let auth = format!("Bearer {key}");
        let body = format!(r#"{{"session":{session}}}"#);
        let (s, _, b) = http_with(
            e.http,
            "POST",
            "/v1/realtime/client_secrets",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["value"].as_str().unwrap().to_string()
    };
    let recorded = mint(r#"{"type":"realtime","tern":{"record":true}}"#);
    let plain = mint(r#"{"type":"realtime","instructions":"be brief"}"#);
    let (_, yes) = call_as(&e, None, Some(&recorded), Some(key));
    // The browser's form asks for recording under a token that did not: ignored.
    let form = r#"{"type":"realtime","tern":{"record":true}}"#;
    let (_, no) = call_as(&e, Some(form), Some(&plain), Some(key));
    let done = |b: &[u8]| read_ogg(b).is_some();
    finished(&dir.join(format!("{yes}-in.ogg")), done);
    finished(&dir.join(format!("{yes}-out.ogg")), done);
    assert!(!dir.join(format!("{no}-in.ogg")).exists());
    e.stop();
    e.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spent_disk_budget_stops_recording_and_not_the_call() {
    let dir = temp_dir("budget");
    let budget = 24 * 1024;
    let e = engine(&dir, budget, Some(RecordFormat::Ogg));
    let (c, id) = call(&e, None);
    // The call itself went on: the whole turn came back.
    assert!(
        c.client.audible_frames() > 100,
        "{}",
        c.client.audible_frames()
    );
    let m = metrics(&e);
    assert_eq!(metric(&m, "tern_recording_stopped", ""), 1.0);
    assert_eq!(
        metric(&m, "tern_recordings_total", "outcome=\"stopped_budget\""),
        1.0
    );
    // What was written is within the budget and still a valid, finished file.
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= budget, "{total} bytes on disk, budget {budget}");
    let (in_s, _, _) = read_ogg(&std::fs::read(dir.join(format!("{id}-in.ogg"))).unwrap())
        .expect("closed properly");
    let (sent_s, _, _) = client_spans(&c);
    assert!(
        in_s > 0.5 && in_s < sent_s - 0.5,
        "recorded {in_s} s of {sent_s} s before the budget ran out"
    );
    // A later call is not recorded at all, and goes on too.
    let (c2, id2) = call(&e, None);
    assert!(c2.client.audible_frames() > 100);
    assert!(!dir.join(format!("{id2}-in.ogg")).exists());
    e.stop();
    e.join();
    let _ = std::fs::remove_dir_all(&dir);
}

fn metrics(e: &Engine) -> String {
    let (_, _, body) = http(e.http, "GET", "/metrics", None, b"");
    String::from_utf8(body).unwrap()
}
