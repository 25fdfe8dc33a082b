//! The recorder thread: call recordings written off the media cores. Each shard hands packets over
//! through its own bounded queue (a full queue drops the packet and counts it: a slow disk never
//! slows a call); this thread places them in time, writes the files and keeps the disk budget
//! (`--record-max-bytes`). When the budget is spent or the disk fails, recording stops (every
//! file is closed properly, the shards stop handing packets over); calls go on.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use crate::core::media::codec::AudioCodec;
use crate::core::recording::ogg_opus::OggOpusWriter;
use crate::core::recording::track::{Placement, TrackClock};
use crate::core::recording::wav::{WavEncoding, WavWriter};
use crate::core::recording::{opus_samples_48k, Direction, RecordEvent, RecordFormat};
use crate::core::session_id::SessionId;

/// The largest packet recorded (Opus's own limit is 1275 bytes); larger ones are dropped.
pub const MAX_RECORD_PACKET: usize = 1280;
/// Messages a shard may have waiting for the recorder (a second of 40 calls, both directions).
const QUEUE: usize = 4096;
/// Bytes kept back from the budget for the ends of the open files.
const RESERVE_PER_TRACK: u64 = 1024;

/// `--record-dir` and `--record-max-bytes`.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// What a shard hands over. Every slot of the queue holds the largest packet, so handing one over
/// copies into preallocated memory and never allocates (boxing the packet would, per packet).
#[allow(clippy::large_enum_variant)]
pub enum RecordMsg {
    Open {
        call: SessionId,
        format: RecordFormat,
        at: Instant,
    },
    Packet {
        call: SessionId,
        dir: Direction,
        at: Instant,
        rtp48: u64,
        codec: AudioCodec,
        len: u16,
        data: [u8; MAX_RECORD_PACKET],
    },
    Close {
        call: SessionId,
    },
}

/// Counters shared by the shards and the recorder thread, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecorderShared {
    /// Set when the budget is spent or the disk failed: shards stop handing packets over.
    pub stopped: AtomicBool,
    pub dropped_queue_full: AtomicU64,
    pub dropped_oversized: AtomicU64,
    pub dropped_late: AtomicU64,
    pub bytes: AtomicU64,
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub stopped_budget: AtomicU64,
    pub stopped_io_error: AtomicU64,
}

impl RecorderShared {
    /// Prometheus text for the recorder.
    pub fn render(&self, o: &mut String) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "# HELP tern_recordings_total Call recordings (both directions of a call), by outcome.\n\
             # TYPE tern_recordings_total counter\n\
             tern_recordings_total{{outcome=\"started\"}} {}\n\
             tern_recordings_total{{outcome=\"completed\"}} {}\n\
             tern_recordings_total{{outcome=\"stopped_budget\"}} {}\n\
             tern_recordings_total{{outcome=\"stopped_io_error\"}} {}\n\
             # HELP tern_recording_bytes_total Bytes written to --record-dir.\n\
             # TYPE tern_recording_bytes_total counter\n\
             tern_recording_bytes_total {}\n\
             # HELP tern_recording_packets_dropped_total Packets not recorded, by reason.\n\
             # TYPE tern_recording_packets_dropped_total counter\n\
             tern_recording_packets_dropped_total{{reason=\"queue_full\"}} {}\n\
             tern_recording_packets_dropped_total{{reason=\"oversized\"}} {}\n\
             tern_recording_packets_dropped_total{{reason=\"late\"}} {}\n\
             # HELP tern_recording_stopped 1 once recording stopped for this process (budget spent or disk failed).\n\
             # TYPE tern_recording_stopped gauge\n\
             tern_recording_stopped {}",
            l(&self.started),
            l(&self.completed),
            l(&self.stopped_budget),
            l(&self.stopped_io_error),
            l(&self.bytes),
            l(&self.dropped_queue_full),
            l(&self.dropped_oversized),
            l(&self.dropped_late),
            u8::from(self.stopped.load(Ordering::Relaxed)),
        );
    }
}

/// A shard's end of its queue.
#[derive(Clone)]
pub struct ShardRecorder {
    queue: Arc<ArrayQueue<RecordMsg>>,
    shared: Arc<RecorderShared>,
}

impl ShardRecorder {
    /// Hands one event over; never blocks (a full queue drops it, counted).
    pub fn push(&self, call: SessionId, now: Instant, ev: RecordEvent<'_>) {
        if self.shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let msg = match ev {
            RecordEvent::Open { format } => RecordMsg::Open {
                call,
                format,
                at: now,
            },
            RecordEvent::Close => RecordMsg::Close { call },
            RecordEvent::Packet {
                dir,
                rtp48,
                codec,
                payload,
            } => {
                if payload.len() > MAX_RECORD_PACKET {
                    self.shared
                        .dropped_oversized
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let mut data = [0u8; MAX_RECORD_PACKET];
                data[..payload.len()].copy_from_slice(payload);
                RecordMsg::Packet {
                    call,
                    dir,
                    at: now,
                    rtp48,
                    codec,
                    len: payload.len() as u16,
                    data,
                }
            }
        };
        if self.queue.push(msg).is_err() {
            self.shared
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the recorder thread for `shards` shards. It runs until `done` is set (after the shards
/// have ended) and the queues are empty, then closes every file.
pub fn spawn(
    settings: RecordSettings,
    shards: usize,
    done: Arc<AtomicBool>,
) -> io::Result<(
    Vec<ShardRecorder>,
    Arc<RecorderShared>,
    std::thread::JoinHandle<()>,
)> {
    std::fs::create_dir_all(&settings.dir)?;
    let shared = Arc::new(RecorderShared::default());
    let queues: Vec<_> = (0..shards)
        .map(|_| Arc::new(ArrayQueue::new(QUEUE)))
        .collect();
    let ends = queues
        .iter()
        .map(|q| ShardRecorder {
            queue: q.clone(),
            shared: shared.clone(),
        })
        .collect();
    let mut rec = Recorder {
        settings,
        shared: shared.clone(),
        calls: HashMap::new(),
        serial: 0,
    };
    let join = std::thread::Builder::new()
        .name("tern-recorder".into())
        .spawn(move || {
            let mut last_flush = Instant::now();
            loop {
                let mut got = 0;
                for q in &queues {
                    while let Some(m) = q.pop() {
                        rec.handle(m);
                        got += 1;
                    }
                }
                if last_flush.elapsed() >= Duration::from_secs(1) {
                    last_flush = Instant::now();
                    rec.flush();
                }
                if got == 0 {
                    if done.load(Ordering::Acquire) && queues.iter().all(|q| q.is_empty()) {
                        rec.finish_all();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })?;
    Ok((ends, shared, join))
}

/// A file that counts what goes into it.
struct Counted {
    out: BufWriter<File>,
    shared: Arc<RecorderShared>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Seek for Counted {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.out.seek(pos)
    }
}

enum Writer {
    Ogg(OggOpusWriter<Counted>),
    /// WAV; Opus packets are decoded here (G.711 bytes go in as they are).
    Wav(WavWriter<Counted>, Option<audiopus::coder::Decoder>),
}

struct Track {
    clock: TrackClock,
    writer: Writer,
}

struct Call {
    id: String,
    format: RecordFormat,
    start: Instant,
    /// Received, then sent.
    tracks: [Option<Track>; 2],
    /// A track failed to open or write: the call's recording is over.
    failed: bool,
}

struct Recorder {
    settings: RecordSettings,
    shared: Arc<RecorderShared>,
    calls: HashMap<SessionId, Call>,
    serial: u32,
}

impl Recorder {
    fn handle(&mut self, m: RecordMsg) {
        match m {
            RecordMsg::Open { call, format, at } => {
                if self.shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                self.shared.started.fetch_add(1, Ordering::Relaxed);
                self.calls.insert(
                    call,
                    Call {
                        id: call.call_id(),
                        format,
                        start: at,
                        tracks: [None, None],
                        failed: false,
                    },
                );
            }
            RecordMsg::Close { call } => {
                if let Some(c) = self.calls.remove(&call) {
                    if self.finish(c) {
                        self.shared.completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            RecordMsg::Packet {
                call,
                dir,
                at,
                rtp48,
                codec,
                len,
                data,
            } => {
                let payload = &data[..usize::from(len)];
                if let Err(e) = self.packet(call, dir, at, rtp48, codec, payload) {
                    self.io_failure(call, &e);
                }
                self.check_budget();
            }
        }
    }

    fn packet(
        &mut self,
        call: SessionId,
        dir: Direction,
        at: Instant,
        rtp48: u64,
        codec: AudioCodec,
        payload: &[u8],
    ) -> io::Result<()> {
        let serial = self.serial;
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        if c.failed {
            return Ok(());
        }
        let slot = &mut c.tracks[dir as usize];
        if slot.is_none() {
            let ext = c.format.extension(codec);
            let path = self
                .settings
                .dir
                .join(format!("{}-{}.{ext}", c.id, dir.label()));
            let file = Counted {
                out: BufWriter::new(File::create(&path)?),
                shared: self.shared.clone(),
            };
            let writer = match (ext, codec) {
                ("ogg", _) => Writer::Ogg(OggOpusWriter::new(file, serial, &c.id, dir.label())?),
                (_, AudioCodec::Pcmu) => {
                    Writer::Wav(WavWriter::new(file, WavEncoding::Mulaw)?, None)
                }
                (_, AudioCodec::Pcma) => {
                    Writer::Wav(WavWriter::new(file, WavEncoding::Alaw)?, None)
                }
                (_, AudioCodec::Opus) => {
                    let dec = audiopus::coder::Decoder::new(
                        audiopus::SampleRate::Hz48000,
                        audiopus::Channels::Mono,
                    )
                    .map_err(|e| io::Error::other(e.to_string()))?;
                    let enc = WavEncoding::Pcm16 { rate: 48_000 };
                    Writer::Wav(WavWriter::new(file, enc)?, Some(dec))
                }
            };
            self.serial = self.serial.wrapping_add(1);
            *slot = Some(Track {
                clock: TrackClock::default(),
                writer,
            });
        }
        let Some(track) = slot.as_mut() else {
            return Ok(());
        };
        let samples = match codec {
            AudioCodec::Opus => match opus_samples_48k(payload) {
                Some(n) => u64::from(n),
                None => return Ok(()),
            },
            // 8 kHz, one byte a sample.
            _ => payload.len() as u64 * 6,
        };
        let silence = match track.clock.place(c.start, at, rtp48) {
            Placement::Write { silence } => silence,
            Placement::Late => {
                self.shared.dropped_late.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        match &mut track.writer {
            Writer::Ogg(w) => {
                w.silence(silence)?;
                w.packet(payload, samples)?;
            }
            Writer::Wav(w, None) => {
                w.silence(silence / 6)?;
                w.bytes(payload)?;
            }
            Writer::Wav(w, Some(dec)) => {
                w.silence(silence)?;
                let mut pcm = [0i16; 5760];
                let n = audiopus::packet::Packet::try_from(payload)
                    .ok()
                    .and_then(|p| {
                        let out = audiopus::MutSignals::try_from(&mut pcm[..]).ok()?;
                        dec.decode(Some(p), out, false).ok()
                    })
                    .unwrap_or(0);
                if n > 0 {
                    w.pcm(&pcm[..n])?;
                } else {
                    w.silence(samples)?;
                }
            }
        }
        track.clock.advance(silence + samples);
        Ok(())
    }

    /// Closes a call's files; false if one failed.
    fn finish(&mut self, c: Call) -> bool {
        let mut ok = !c.failed;
        for t in c.tracks.into_iter().flatten() {
            let r = match t.writer {
                Writer::Ogg(w) => w.finish().and_then(|mut f| f.flush()),
                Writer::Wav(w, _) => w.finish().and_then(|mut f| f.flush()),
            };
            if let Err(e) = r {
                tracing::warn!(call = %c.id, "recording: closing a file failed: {e}");
                ok = false;
            }
        }
        ok
    }

    fn io_failure(&mut self, call: SessionId, e: &io::Error) {
        self.shared.stopped_io_error.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.calls.get_mut(&call) {
            c.failed = true;
            tracing::warn!(call = %c.id, "recording stopped for this call: {e}");
        }
        if e.raw_os_error() == Some(libc::ENOSPC) {
            self.stop_all("the disk is full");
        }
    }

    /// Stops every recording when the budget would be passed with what the open files still
    /// hold back (an Ogg page in progress) and their ends.
    fn check_budget(&mut self) {
        let held: u64 = self
            .calls
            .values()
            .flat_map(|c| c.tracks.iter().flatten())
            .map(|t| {
                RESERVE_PER_TRACK
                    + match &t.writer {
                        Writer::Ogg(w) => w.pending_bytes(),
                        Writer::Wav(..) => 0,
                    }
            })
            .sum();
        let used = self.shared.bytes.load(Ordering::Relaxed) + held;
        if used >= self.settings.max_bytes && !self.shared.stopped.load(Ordering::Relaxed) {
            let n = self.calls.len() as u64;
            self.shared.stopped_budget.fetch_add(n, Ordering::Relaxed);
            self.stop_all("the --record-max-bytes budget is spent");
        }
    }

    /// Recording stops for this process: every file is closed, shards stop handing over.
    fn stop_all(&mut self, why: &str) {
        if !self.shared.stopped.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                calls = self.calls.len(),
                bytes = self.shared.bytes.load(Ordering::Relaxed),
                "recording stopped: {why}; calls go on unrecorded"
            );
        }
        self.finish_all();
    }

    fn finish_all(&mut self) {
        let calls: Vec<_> = self.calls.drain().map(|(_, c)| c).collect();
        for c in calls {
            self.finish(c);
        }
    }

    fn flush(&mut self) {
        for c in self.calls.values_mut() {
            for t in c.tracks.iter_mut().flatten() {
                let r = match &mut t.writer {
                    Writer::Ogg(w) => w.flush(),
                    Writer::Wav(w, _) => w.flush(),
                };
                if let Err(e) = r {
                    tracing::debug!(call = %c.id, "recording flush: {e}");
                }
            }
        }
    }
}
