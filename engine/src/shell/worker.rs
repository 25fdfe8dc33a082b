//! Inference worker threads: each runs one [`Agent`] for the sessions bound to it, reading the
//! uplink rings of every shard and writing replies into per-shard downlink rings. A worker parks
//! when idle, at most `MAX_PARK`; shards unpark it after pushing something urgent (once per loop
//! turn, see `UplinkMsg::is_urgent`), and it finds the rest at its next turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::rings::{Doorbell, Ring};
use crate::agent::worker_vad::WorkerVad;
use crate::agent::{Agent, AgentKind, AgentOutput};
use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};
use crate::core::turn::turn_model::TurnModel;
use crate::core::turn::vad::VadBackend;

/// Longest a worker sleeps without being woken: how long a message that does not wake it
/// (`UplinkMsg::is_urgent`) can wait.
const MAX_PARK: Duration = Duration::from_millis(5);

/// The rings of one (shard, worker) pair.
#[derive(Debug)]
pub struct WorkerLink {
    pub uplink: Ring<UplinkMsg>,
    pub downlink: Ring<DownlinkMsg>,
}

/// Everything a worker thread needs.
pub struct WorkerPlan {
    pub id: u16,
    /// Indexed by shard.
    pub links: Vec<Arc<WorkerLink>>,
    /// Shard doorbells, indexed by shard.
    pub bells: Vec<Arc<Doorbell>>,
    pub agent: AgentKind,
    /// `--vad`: a backend too slow for media cores runs here (`WorkerVad`).
    pub vad: VadBackend,
    /// `--turn-model`: with `smart-turn` the worker keeps its sessions' audio and runs the model
    /// on a scorer thread of its own (`WorkerTurnModel`).
    pub turn_model: TurnModel,
    pub stop: Arc<AtomicBool>,
    /// CPUs the thread may run on (`off_media_cores`); empty: wherever the kernel puts it.
    pub cpus: Vec<usize>,
}

/// The CPUs for inference workers: those the process may use that no shard is pinned to. Empty
/// when the shards take every CPU (then workers share the media cores, as on a one-CPU machine).
/// Left to the kernel, a worker lands on media cores too and takes its turn from a shard in the
/// middle of its 20 ms frames (the 16-core device showed every latency figure worse with 4
/// unpinned workers than with 1).
pub fn off_media_cores(online: &[usize], media: &[usize]) -> Vec<usize> {
    online
        .iter()
        .copied()
        .filter(|c| !media.contains(c))
        .collect()
}

/// Restricts the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET is given ids below CPU_SETSIZE only, and
    // sched_setaffinity reads the set for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

struct Out<'a> {
    links: &'a [Arc<WorkerLink>],
    pushed: &'a mut [bool],
}

impl AgentOutput for Out<'_> {
    fn send(&mut self, msg: DownlinkMsg) -> Result<(), DownlinkMsg> {
        let shard = msg.key().shard as usize;
        let Some(link) = self.links.get(shard) else {
            return Ok(()); // no such shard: nothing can take it
        };
        link.downlink.push(msg)?;
        self.pushed[shard] = true;
        Ok(())
    }
}

/// Starts a worker thread; returns its handle (for `unpark`) and join handle.
pub fn spawn(plan: WorkerPlan) -> std::io::Result<(Thread, JoinHandle<()>)> {
    let handle = std::thread::Builder::new()
        .name(format!("tern-worker-{}", plan.id))
        .spawn(move || run(plan))?;
    Ok((handle.thread().clone(), handle))
}

fn run(plan: WorkerPlan) {
    if !plan.cpus.is_empty() {
        if let Err(e) = pin_current_thread(&plan.cpus) {
            tracing::warn!(worker = plan.id, cpus = ?plan.cpus, "cannot keep the worker off the media cores: {e}");
        }
    }
    let mut agent: Box<dyn Agent> = match plan.agent.build(plan.id) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(worker = plan.id, "cannot start the agent: {e}");
            return;
        }
    };
    let mut vad = WorkerVad::new(plan.vad);
    #[cfg(feature = "smart-turn")]
    let mut turn = match plan.turn_model {
        TurnModel::SmartTurn => {
            let me = std::thread::current();
            match crate::agent::worker_turn::WorkerTurnModel::start(plan.id, me, &plan.cpus) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(
                        worker = plan.id,
                        "cannot start the turn model thread, pauses keep the timer's window: {e}"
                    );
                    None
                }
            }
        }
        TurnModel::Prosody => None,
    };
    let mut pushed = vec![false; plan.links.len()];
    while !plan.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut got = 0usize;
        for link in &plan.links {
            // Bounded work per shard per turn, so one busy shard cannot starve the others.
            for _ in 0..1024 {
                let Some(msg) = link.uplink.pop() else { break };
                got += 1;
                let mut out = Out {
                    links: &plan.links,
                    pushed: &mut pushed,
                };
                if let Some(v) = vad.as_mut() {
                    v.on_message(&msg, &mut out);
                }
                #[cfg(feature = "smart-turn")]
                if let Some(t) = turn.as_mut() {
                    t.on_message(&msg, &mut out);
                }
                if matches!(msg, UplinkMsg::ScoreTurn { .. }) {
                    continue;
                }
                agent.on_message(now, msg, &mut out);
            }
        }
        let mut out = Out {
            links: &plan.links,
            pushed: &mut pushed,
        };
        #[cfg(feature = "smart-turn")]
        if let Some(t) = turn.as_mut() {
            t.poll(&mut out);
        }
        let next = agent.poll(now, &mut out);
        for (i, p) in pushed.iter_mut().enumerate() {
            if std::mem::take(p) {
                plan.bells[i].ring();
            }
        }
        if got == 0 {
            let wait = next.map_or(MAX_PARK, |t| {
                t.saturating_duration_since(Instant::now()).min(MAX_PARK)
            });
            std::thread::park_timeout(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_cpus_the_shards_leave() {
        assert_eq!(off_media_cores(&[0, 1, 2, 3], &[0, 1]), vec![2, 3]);
        assert_eq!(off_media_cores(&[0, 1, 2, 3], &[1, 3]), vec![0, 2]);
        // Every CPU a media core: no pinning, the kernel shares them.
        assert!(off_media_cores(&[0, 1], &[0, 1]).is_empty());
    }

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpus() {
        let online = crate::config::CpuList::all_online().0;
        let first = online[0];
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[first]).expect("pin");
            crate::config::CpuList::all_online().0
        })
        .join()
        .expect("thread");
        assert_eq!(seen, vec![first]);
    }
}
