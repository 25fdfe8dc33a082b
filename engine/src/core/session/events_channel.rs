//! The `oai-events` data channel's send side: server events queue here until the channel opens
//! and while SCTP has no room, oldest dropped first past a bound.

use std::collections::VecDeque;

use str0m::channel::ChannelId;
use str0m::Rtc;

use crate::heap::in_dependency;

/// The label of the events data channel.
pub const EVENTS_CHANNEL: &str = "oai-events";
/// Events queued before the channel opens (older ones are dropped).
const MAX_PENDING_EVENTS: usize = 32;

#[derive(Debug, Default)]
pub(super) struct EventsChannel {
    id: Option<ChannelId>,
    pending: VecDeque<String>,
}

impl EventsChannel {
    pub fn id(&self) -> Option<ChannelId> {
        self.id
    }

    /// The channel opened: `first` (`session.created`) goes ahead of anything queued.
    pub fn open(&mut self, id: ChannelId, first: String, rtc: &mut Rtc) {
        self.id = Some(id);
        self.pending.push_front(first);
        self.flush(rtc);
    }

    pub fn closed(&mut self, id: ChannelId) {
        if self.id == Some(id) {
            self.id = None;
        }
    }

    /// The channel is open and nothing waits to go out.
    pub fn is_drained(&self) -> bool {
        self.id.is_some() && self.pending.is_empty()
    }

    pub fn send(&mut self, json: String, rtc: &mut Rtc) {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            self.pending.pop_front();
        }
        self.pending.push_back(json);
        self.flush(rtc);
    }

    fn flush(&mut self, rtc: &mut Rtc) {
        let Some(id) = self.id else {
            return;
        };
        while let Some(ev) = self.pending.pop_front() {
            let written =
                in_dependency(|| rtc.channel(id).map(|mut ch| ch.write(false, ev.as_bytes())));
            if !matches!(written, Some(Ok(true))) {
                self.pending.push_front(ev);
                return;
            }
        }
    }
}
