//! What a shard core asks its shell to do, pulled in order with `ShardCore::poll_output` after
//! each input, in the manner of str0m's `poll_output` and quinn-proto's `poll_transmit`.
//!
//! Sessions write into one `Outputs` queue owned by their shard core; the shell drains it and only
//! moves bytes (socket batch, worker rings, other shards' inboxes) and counts. A message the shell
//! cannot queue goes back to the core (`ShardCore::worker_full`, `ShardCore::undeliverable`), which
//! settles it. Payloads are copied into one byte buffer that keeps its capacity, so a steady shard
//! allocates nothing here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::media::codec::AudioCodec;
use super::media::decoder::FrameOrigin;
use super::peer_addr::Peer;
use super::recording::{Direction, RecordEvent, RecordFormat};
use super::ring_msg::UplinkMsg;
use super::session_id::SessionId;
use super::session_limits::EventRejected;
use super::shard_msg::CoreMsg;
use super::turn::barge_in::BargeInOutcome;
use super::turn::latency::TurnLatency;
use super::turn::turn_model::TurnAnswer;

/// One thing for the shell to do.
// Audio is inline on purpose (as in `ring_msg`): queuing a frame never allocates.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Output<'a> {
    /// A datagram for `to` (over UDP, or framed on its TCP connection) from our address `source`.
    Transmit {
        to: Peer,
        source: SocketAddr,
        payload: &'a [u8],
    },
    /// A message for inference worker `worker`; one its ring refuses goes back through
    /// `ShardCore::worker_full`.
    ToWorker { worker: u16, msg: UplinkMsg },
    /// A message for shard `shard`; one its inbox refuses goes back through
    /// `ShardCore::undeliverable`.
    ToShard { shard: u16, msg: CoreMsg },
    /// For the recording of `call` (only sessions that record emit these).
    Record {
        call: SessionId,
        at: Instant,
        event: RecordEvent<'a>,
    },
    /// A measurement or a life-cycle change, for metrics and the fleet directory.
    Event(ShardEvent),
}

/// Measurements and life-cycle changes (nothing the shell must act on to keep calls working).
#[derive(Debug, Clone, Copy)]
pub enum ShardEvent {
    /// A session connected `setup` after its offer arrived.
    Connected { setup: Duration },
    /// A reply frame left the playout queue at `taken_at`; its datagram is in this step's output.
    DownlinkSent { taken_at: Instant },
    /// The session of `call` ended (its admission permit was released with it).
    SessionEnded { call: SessionId },
    /// A client event was refused.
    EventRejected(EventRejected),
    /// Speech over a playing reply: it interrupted, or was rejected.
    BargeIn(BargeInOutcome),
    /// A reply frame went out `late_by` after its pacing tick.
    Paced { late_by: Duration },
    /// An uplink frame was produced after its packet was held `hold` by the reorder buffer.
    UplinkFrame { origin: FrameOrigin, hold: Duration },
    /// An uplink packet came after its frame was concealed (dropped).
    UplinkLate,
    /// A turn's latency breakdown is complete.
    TurnLatency(TurnLatency),
    /// The turn model answered (or could not) a question asked `waited` ago.
    TurnModel {
        answer: TurnAnswer,
        waited: Duration,
    },
}

/// A queued output; payloads live in `Outputs::bytes`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Queued {
    Transmit {
        to: Peer,
        source: SocketAddr,
        payload: Range<usize>,
    },
    ToWorker {
        worker: u16,
        msg: UplinkMsg,
    },
    Record {
        call: SessionId,
        at: Instant,
        event: QueuedRecord,
    },
    Event(ShardEvent),
}

#[derive(Debug)]
enum QueuedRecord {
    Open {
        format: RecordFormat,
    },
    Packet {
        dir: Direction,
        rtp48: u64,
        codec: AudioCodec,
        payload: Range<usize>,
    },
    Close,
}

/// The shard core's output queue, written by its sessions and drained by `pop`.
#[derive(Debug, Default)]
pub struct Outputs {
    queue: VecDeque<Queued>,
    bytes: Vec<u8>,
}

impl Outputs {
    pub fn with_capacity(outputs: usize, bytes: usize) -> Self {
        Outputs {
            queue: VecDeque::with_capacity(outputs),
            bytes: Vec::with_capacity(bytes),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn copy(&mut self, payload: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        start..self.bytes.len()
    }

    pub fn transmit(&mut self, to: Peer, source: SocketAddr, payload: &[u8]) {
        let payload = self.copy(payload);
        self.queue.push_back(Queued::Transmit {
            to,
            source,
            payload,
        });
    }

    pub fn for_worker(&mut self, worker: u16, msg: UplinkMsg) {
        self.queue.push_back(Queued::ToWorker { worker, msg });
    }

    pub fn record(&mut self, call: SessionId, at: Instant, event: RecordEvent<'_>) {
        let event = match event {
            RecordEvent::Open { format } => QueuedRecord::Open { format },
            RecordEvent::Packet {
                dir,
                rtp48,
                codec,
                payload,
            } => QueuedRecord::Packet {
                dir,
                rtp48,
                codec,
                payload: self.copy(payload),
            },
            RecordEvent::Close => QueuedRecord::Close,
        };
        self.queue.push_back(Queued::Record { call, at, event });
    }

    pub fn event(&mut self, event: ShardEvent) {
        self.queue.push_back(Queued::Event(event));
    }

    /// The next output, in the order it was written. The byte buffer is reused once the queue is
    /// drained (the previous output's borrow has ended by then).
    pub fn pop(&mut self) -> Option<Output<'_>> {
        let Some(next) = self.queue.pop_front() else {
            self.bytes.clear();
            return None;
        };
        Some(match next {
            Queued::Transmit {
                to,
                source,
                payload,
            } => Output::Transmit {
                to,
                source,
                payload: &self.bytes[payload],
            },
            Queued::ToWorker { worker, msg } => Output::ToWorker { worker, msg },
            Queued::Record { call, at, event } => Output::Record {
                call,
                at,
                event: match event {
                    QueuedRecord::Open { format } => RecordEvent::Open { format },
                    QueuedRecord::Packet {
                        dir,
                        rtp48,
                        codec,
                        payload,
                    } => RecordEvent::Packet {
                        dir,
                        rtp48,
                        codec,
                        payload: &self.bytes[payload],
                    },
                    QueuedRecord::Close => RecordEvent::Close,
                },
            },
            Queued::Event(e) => Output::Event(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_out_in_order_with_their_bytes() {
        let mut out = Outputs::default();
        let a: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        out.transmit(Peer::udp(a), a, b"one");
        out.event(ShardEvent::UplinkLate);
        out.transmit(Peer::udp(a), a, b"two");
        assert!(matches!(
            out.pop(),
            Some(Output::Transmit {
                payload: b"one",
                ..
            })
        ));
        assert!(matches!(
            out.pop(),
            Some(Output::Event(ShardEvent::UplinkLate))
        ));
        assert!(matches!(
            out.pop(),
            Some(Output::Transmit {
                payload: b"two",
                ..
            })
        ));
        assert!(out.pop().is_none());
        assert!(out.bytes.is_empty(), "the buffer is reused once drained");
    }

    #[test]
    fn a_drained_queue_reuses_its_buffers() {
        let mut out = Outputs::with_capacity(8, 256);
        let a: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        for _ in 0..100 {
            for _ in 0..8 {
                out.transmit(Peer::udp(a), a, &[7u8; 32]);
            }
            while out.pop().is_some() {}
        }
        assert_eq!(out.queue.capacity(), 8);
        assert_eq!(out.bytes.capacity(), 256);
    }
}
