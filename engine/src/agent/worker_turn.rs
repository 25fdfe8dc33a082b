//! `--turn-model smart-turn` on the inference worker. The worker keeps each session's last 8 s of
//! audio at 16 kHz (it gets every uplink frame anyway, for the agent). When a session's turn
//! detector asks about a pause (`UplinkMsg::ScoreTurn`), the worker copies the window that ends
//! with that frame into a job for its scorer thread, which runs Smart Turn v3.2 and answers
//! through the worker (`DownlinkMsg::TurnScore`).
//!
//! The scorer is a thread of its own because a decision costs about 0.2 s of CPU and the worker
//! must keep streaming replies meanwhile; it runs at a lower priority (nice 10), so where it shares
//! CPUs with media cores they come first. It takes every waiting question at once and scores them
//! oldest first (earliest deadline first) with one plan, skipping those whose answer could not be
//! in before their deadline at its recent pace (`Stale`): under load it spends its CPU on answers
//! that can still change a turn. Its queue is bounded (`SCORER_QUEUE`); a question that finds it
//! full is answered at once with `QueueFull`, and the pause keeps the silence timer's window. (A tract plan for a batch of
//! windows costs the same per window as one run per window, so they are run one by one.)

use std::collections::{HashMap, VecDeque};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender};

use super::AgentOutput;
use crate::core::media::frame::FRAME_MS;
use crate::core::media::resample::Resampler;
use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};
use crate::core::session_id::SessionKey;
use crate::core::turn::smart_turn::{self, SmartTurn, WhisperFeatures, FEATURES_LEN};
use crate::core::turn::turn_model::{TurnAnswer, Unanswered};

/// Questions that may wait for the scorer (about 1.6 s of its work).
pub const SCORER_QUEUE: usize = 8;
/// Samples of 16 kHz audio in one 20 ms frame.
const FRAME_SAMPLES: usize = (smart_turn::RATE as u64 * FRAME_MS / 1000) as usize;

/// One session's last 8 s at 16 kHz, as a ring.
struct History {
    resampler: Resampler,
    samples: Box<[i16]>,
    /// Where the next sample goes.
    next: usize,
    filled: usize,
    /// The newest frame in it.
    last_index: Option<u64>,
}

impl History {
    fn new(rate_hz: u32) -> Self {
        History {
            resampler: Resampler::new(rate_hz, smart_turn::RATE),
            samples: vec![0; smart_turn::WINDOW_SAMPLES].into_boxed_slice(),
            next: 0,
            filled: 0,
            last_index: None,
        }
    }

    fn push(&mut self, index: u64, frame: &[i16], scratch: &mut Vec<i16>) {
        scratch.clear();
        self.resampler.process(frame, scratch);
        let n = self.samples.len();
        for &s in scratch.iter() {
            self.samples[self.next] = s;
            self.next = (self.next + 1) % n;
        }
        self.filled = (self.filled + scratch.len()).min(n);
        self.last_index = Some(index);
    }

    /// The window that ends with frame `index` (-1..1) into `out`; false when none of it is here.
    fn window(&self, index: u64, out: &mut Vec<f32>) -> bool {
        out.clear();
        let Some(last) = self.last_index else {
            return false;
        };
        // Frames after `index` already here (a VAD on the worker answers later than audio comes).
        let skip = (last.saturating_sub(index) as usize * FRAME_SAMPLES).min(self.filled);
        let take = self.filled - skip;
        if take == 0 {
            return false;
        }
        let n = self.samples.len();
        let end = (self.next + n - skip) % n;
        let start = (end + n - take) % n;
        out.extend((0..take).map(|k| f32::from(self.samples[(start + k) % n]) / 32768.0));
        true
    }
}

/// What the worker sends its scorer.
enum ToScorer {
    /// A session that may ask has started to speak: load the model now, so that its first
    /// question does not wait seconds for the load and go stale.
    Warm,
    Score(Job),
}

struct Job {
    key: SessionKey,
    index: u64,
    asked_at: Instant,
    deadline: Instant,
    audio: Vec<f32>,
}

struct Answer {
    msg: DownlinkMsg,
    /// The job's buffer, for the next job.
    audio: Vec<f32>,
}

pub struct WorkerTurnModel {
    /// Each session's model rate, from its `Start`.
    rates: HashMap<SessionKey, u32>,
    histories: HashMap<SessionKey, History>,
    jobs: Option<Sender<ToScorer>>,
    /// The scorer was told to load the model (`ToScorer::Warm`).
    warmed: bool,
    answers: Receiver<Answer>,
    /// Window buffers the scorer gave back.
    free: Vec<Vec<f32>>,
    /// Answers a full downlink ring refused, sent first on the next poll.
    backlog: VecDeque<DownlinkMsg>,
    scratch: Vec<i16>,
    scorer: Option<JoinHandle<()>>,
}

impl WorkerTurnModel {
    /// Starts the scorer thread of worker `id`, on `cpus` (empty: anywhere); it wakes `worker`
    /// when answers are ready.
    pub fn start(id: u16, worker: Thread, cpus: &[usize]) -> std::io::Result<Self> {
        let (jobs, job_rx) = bounded::<ToScorer>(SCORER_QUEUE);
        let (answer_tx, answers) = bounded::<Answer>(SCORER_QUEUE * 2);
        let cpus = cpus.to_vec();
        let scorer = std::thread::Builder::new()
            .name(format!("tern-turn-{id}"))
            .spawn(move || {
                if !cpus.is_empty() {
                    if let Err(e) = crate::shell::worker::pin_current_thread(&cpus) {
                        tracing::warn!(worker = id, "turn model thread not pinned: {e}");
                    }
                }
                lower_priority();
                score_loop(job_rx, answer_tx, worker);
            })?;
        Ok(WorkerTurnModel {
            rates: HashMap::new(),
            histories: HashMap::new(),
            jobs: Some(jobs),
            warmed: false,
            answers,
            free: Vec::new(),
            backlog: VecDeque::new(),
            scratch: Vec::with_capacity(FRAME_SAMPLES * 2),
            scorer: Some(scorer),
        })
    }

    /// Sees every uplink message before the agent does.
    pub fn on_message(&mut self, msg: &UplinkMsg, out: &mut dyn AgentOutput) {
        match msg {
            UplinkMsg::Start { key, rate_hz, .. } => {
                self.rates.insert(*key, *rate_hz);
            }
            UplinkMsg::Audio {
                key,
                index,
                frame,
                for_turn_model,
                ..
            } => {
                // Kept only while the session may ask (8 s at 16 kHz, 256 KiB).
                if !for_turn_model {
                    self.histories.remove(key);
                    return;
                }
                let Some(&rate) = self.rates.get(key) else {
                    return;
                };
                if !self.warmed {
                    // A full queue counts as told: the first question waiting there loads it.
                    self.warmed = self.jobs.as_ref().is_some_and(
                        |j| !matches!(j.try_send(ToScorer::Warm), Err(e) if e.is_disconnected()),
                    );
                }
                self.histories
                    .entry(*key)
                    .or_insert_with(|| History::new(rate))
                    .push(*index, frame.samples(), &mut self.scratch);
            }
            UplinkMsg::ScoreTurn {
                key,
                index,
                asked_at,
                deadline,
            } => {
                let (key, index, asked_at, deadline) = (*key, *index, *asked_at, *deadline);
                let mut audio = self
                    .free
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(smart_turn::WINDOW_SAMPLES));
                let have = self
                    .histories
                    .get(&key)
                    .is_some_and(|h| h.window(index, &mut audio));
                let refused = |why| DownlinkMsg::TurnScore {
                    key,
                    index,
                    asked_at,
                    answer: TurnAnswer::Unanswered(why),
                };
                if !have {
                    self.free.push(audio);
                    self.send(refused(Unanswered::NoAudio), out);
                    return;
                }
                let job = Job {
                    key,
                    index,
                    asked_at,
                    deadline,
                    audio,
                };
                let why = match self.jobs.as_ref().map(|j| j.try_send(ToScorer::Score(job))) {
                    Some(Ok(())) => return,
                    Some(Err(e)) => {
                        let why = if e.is_full() {
                            Unanswered::QueueFull
                        } else {
                            Unanswered::NoModel
                        };
                        if let ToScorer::Score(j) = e.into_inner() {
                            self.free.push(j.audio);
                        }
                        why
                    }
                    None => Unanswered::NoModel,
                };
                self.send(refused(why), out);
            }
            UplinkMsg::End { key } => {
                self.histories.remove(key);
                self.rates.remove(key);
            }
            _ => {}
        }
    }

    /// Forwards the scorer's answers.
    pub fn poll(&mut self, out: &mut dyn AgentOutput) {
        while let Ok(a) = self.answers.try_recv() {
            self.free.push(a.audio);
            self.backlog.push_back(a.msg);
        }
        while let Some(msg) = self.backlog.pop_front() {
            if let Err(msg) = out.send(msg) {
                self.backlog.push_front(msg);
                break;
            }
        }
    }

    fn send(&mut self, msg: DownlinkMsg, out: &mut dyn AgentOutput) {
        if self.backlog.is_empty() {
            if let Err(msg) = out.send(msg) {
                self.backlog.push_back(msg);
            }
        } else {
            self.backlog.push_back(msg);
        }
    }
}

impl Drop for WorkerTurnModel {
    fn drop(&mut self) {
        // Closing the queue ends the scorer's loop.
        self.jobs = None;
        if let Some(t) = self.scorer.take() {
            let _ = t.join();
        }
    }
}

/// Nice 10 for the calling thread (Linux keeps a nice value per thread).
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if r != 0 {
        tracing::debug!(
            "turn model thread keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn score_loop(jobs: Receiver<ToScorer>, answers: Sender<Answer>, worker: Thread) {
    // Loaded when the first session that may ask speaks, or with the first question (a node whose
    // sessions never ask pays nothing).
    let mut model: Option<Option<SmartTurn>> = None;
    let mut fx = WhisperFeatures::new();
    let mut features = vec![0.0f32; FEATURES_LEN];
    let mut p = Vec::with_capacity(1);
    let mut batch = Vec::with_capacity(SCORER_QUEUE);
    // Recent wall time per decision (exponential average), to tell which questions can still be
    // answered in time; 0 until the first decision.
    let mut pace = Duration::ZERO;
    while let Ok(first) = jobs.recv() {
        let model = model.get_or_insert_with(|| match SmartTurn::new() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!("turn model unavailable, pauses keep the timer's window: {e}");
                None
            }
        });
        batch.extend(job_of(first));
        while let Ok(j) = jobs.try_recv() {
            batch.extend(job_of(j));
        }
        for job in batch.drain(..) {
            let answer = match &*model {
                None => TurnAnswer::Unanswered(Unanswered::NoModel),
                Some(_) if Instant::now() + pace >= job.deadline => {
                    TurnAnswer::Unanswered(Unanswered::Stale)
                }
                Some(m) => {
                    let (t, wall) = (thread_cpu(), Instant::now());
                    fx.compute(&job.audio, &mut features);
                    let scored = m.score(&features, &mut p);
                    pace = (pace * 3 + wall.elapsed()) / 4;
                    match scored {
                        Ok(()) => TurnAnswer::Scored {
                            probability: p.first().copied().unwrap_or(0.0),
                            model_us: (thread_cpu().saturating_sub(t)).as_micros() as u32,
                        },
                        Err(e) => {
                            tracing::warn!("turn model failed on a window: {e}");
                            TurnAnswer::Unanswered(Unanswered::NoModel)
                        }
                    }
                }
            };
            let msg = DownlinkMsg::TurnScore {
                key: job.key,
                index: job.index,
                asked_at: job.asked_at,
                answer,
            };
            if answers
                .send(Answer {
                    msg,
                    audio: job.audio,
                })
                .is_err()
            {
                return;
            }
            worker.unpark();
        }
    }
}

fn job_of(msg: ToScorer) -> Option<Job> {
    match msg {
        ToScorer::Warm => None,
        ToScorer::Score(job) => Some(job),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::media::frame::PcmFrame;

    fn key() -> SessionKey {
        SessionKey {
            shard: 0,
            slot: 1,
            generation: 1,
        }
    }

    #[test]
    fn the_window_ends_with_the_frame_asked_about() {
        let mut h = History::new(16_000);
        let mut scratch = Vec::new();
        for i in 0..500u64 {
            h.push(i, &[i as i16; FRAME_SAMPLES], &mut scratch);
        }
        let mut w = Vec::new();
        assert!(h.window(499, &mut w));
        // 8 s: the last 400 frames, oldest first.
        assert_eq!(w.len(), smart_turn::WINDOW_SAMPLES);
        assert_eq!(w[0], 100.0 / 32768.0);
        assert_eq!(*w.last().unwrap(), 499.0 / 32768.0);
        // Asked about an earlier frame: the newer ones are left out.
        assert!(h.window(450, &mut w));
        assert_eq!(*w.last().unwrap(), 450.0 / 32768.0);
        assert_eq!(w.len(), smart_turn::WINDOW_SAMPLES - 49 * FRAME_SAMPLES);
        assert!(!History::new(16_000).window(3, &mut w));
    }

    #[test]
    fn answers_each_question_once_and_refuses_without_audio() {
        let mut m = WorkerTurnModel::start(0, std::thread::current(), &[]).expect("starts");
        let k = key();
        let mut out = Vec::<DownlinkMsg>::new();
        m.on_message(
            &UplinkMsg::ScoreTurn {
                key: k,
                index: 3,
                asked_at: Instant::now(),
                deadline: Instant::now() + Duration::from_secs(60),
            },
            &mut out,
        );
        assert!(matches!(
            out.pop(),
            Some(DownlinkMsg::TurnScore {
                answer: TurnAnswer::Unanswered(Unanswered::NoAudio),
                ..
            })
        ));
        let tag = crate::core::session_id::SessionId {
            node: 0,
            shard: 0,
            slot: 1,
            generation: 1,
            secret: 7,
        };
        m.on_message(
            &UplinkMsg::Start {
                key: k,
                tag,
                rate_hz: 24_000,
            },
            &mut out,
        );
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let (_, pcm) = tern_testkit::peer::load_wav(&format!("{dir}hello-24k.wav"));
        let frames = pcm.len() / 480;
        assert!(!m.warmed);
        for (i, c) in pcm.chunks_exact(480).enumerate() {
            let msg = UplinkMsg::Audio {
                key: k,
                index: i as u64,
                frame: PcmFrame::from_slice(c),
                received_at: Instant::now(),
                for_turn_model: true,
            };
            m.on_message(&msg, &mut out);
        }
        // The first frame of a session that may ask told the scorer to load the model.
        assert!(m.warmed);
        let asked = frames as u64 - 1;
        m.on_message(
            &UplinkMsg::ScoreTurn {
                key: k,
                index: asked,
                asked_at: Instant::now(),
                deadline: Instant::now() + Duration::from_secs(60),
            },
            &mut out,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.is_empty() && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(50));
            m.poll(&mut out);
        }
        let [DownlinkMsg::TurnScore {
            index,
            answer:
                TurnAnswer::Scored {
                    probability,
                    model_us,
                },
            ..
        }] = out[..]
        else {
            panic!("one scored answer: {out:?}");
        };
        assert_eq!(index, asked);
        assert!((0.0..=1.0).contains(&probability));
        assert!(model_us > 0);
        // The finished greeting (24 kHz here, resampled) sounds complete, as at 16 kHz.
        assert!(probability > 0.5, "{probability}");
        // A question the scorer cannot answer before its deadline is not computed.
        out.clear();
        m.on_message(
            &UplinkMsg::ScoreTurn {
                key: k,
                index: asked,
                asked_at: Instant::now(),
                deadline: Instant::now(),
            },
            &mut out,
        );
        while out.is_empty() && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(10));
            m.poll(&mut out);
        }
        assert!(
            matches!(
                out[..],
                [DownlinkMsg::TurnScore {
                    answer: TurnAnswer::Unanswered(Unanswered::Stale),
                    ..
                }]
            ),
            "{out:?}"
        );
        m.on_message(&UplinkMsg::End { key: k }, &mut out);
        assert!(m.histories.is_empty() && m.rates.is_empty());
    }
}
