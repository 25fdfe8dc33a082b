//! Batched receives: once the shard's receive wakes for one datagram, the backlog behind it is
//! drained with `recvmmsg` (non-blocking), up to `--recv-batch` datagrams per syscall, into
//! buffers reused for the life of the shard.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::net::MAX_DATAGRAM;

/// Datagrams handled before a receive loop yields to the executor's other tasks (quinn's
/// WorkLimiter).
const RECV_BUDGET: usize = 64;

/// What a receive loop does with the state it shares with its executor's other tasks.
pub trait DatagramHandler {
    /// Which of the state's sockets a loop reads.
    type Socket: Copy;
    /// One datagram from `from` on `socket`.
    fn on_receive(&mut self, now: Instant, socket: Self::Socket, from: SocketAddr, data: &[u8]);
    /// The end of one wake-up's datagrams: send what they produced.
    fn end_step(&mut self, now: Instant);
    /// Whether the loop should end (the shard is stopping).
    fn stopped(&self) -> bool {
        false
    }
}

/// One long-lived receive on `socket` (a dropped in-flight receive can lose a datagram): each
/// wake-up takes one datagram, then drains the backlog behind it with `recvmmsg`, `batch` per
/// call, while `BacklogProbe` says drains find something; the state is borrowed for the whole
/// step, never across an await.
pub async fn receive_loop<S: DatagramHandler>(
    state: Rc<RefCell<S>>,
    socket: glommio::net::UdpSocket,
    which: S::Socket,
    batch: usize,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut backlog = (batch > 1).then(|| RecvBatch::new(socket.as_raw_fd(), batch));
    let mut probe = BacklogProbe::default();
    let mut handled = 0usize;
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("udp receive: {e}");
                glommio::timer::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let now = Instant::now();
        {
            let mut s = state.borrow_mut();
            if s.stopped() {
                return;
            }
            s.on_receive(now, which, source, &buf[..n]);
            if let Some(b) = backlog
                .as_mut()
                .filter(|_| handled < RECV_BUDGET && probe.should_try())
            {
                let mut drained = 0;
                while handled < RECV_BUDGET && b.recv() > 0 {
                    drained += b.len();
                    let now = Instant::now();
                    for i in 0..b.len() {
                        // A UDP/IP socket only yields IP sources.
                        if let (Some(from), data) = b.get(i) {
                            s.on_receive(now, which, from, data);
                        }
                    }
                    handled += b.len();
                    if b.len() < batch {
                        break;
                    }
                }
                probe.found(drained);
            }
            s.end_step(now);
        }
        handled += 1;
        if handled >= RECV_BUDGET {
            handled = 0;
            glommio::yield_if_needed().await;
        }
    }
}

/// Most datagrams one `recvmmsg` takes.
pub const MAX_RECV_BATCH: usize = 64;

/// Whether a wake-up should try to drain a backlog: a `recvmmsg` that finds nothing is a wasted
/// syscall on every datagram of a lightly loaded shard. After an empty drain the next 1, 2, 4 ...
/// up to 32 wake-ups skip it; a drain that finds datagrams (load) makes every wake-up try again.
#[derive(Debug, Default, Clone)]
pub struct BacklogProbe {
    skip: u32,
    backoff: u32,
}

/// Most wake-ups skipped after an empty drain.
const MAX_BACKOFF: u32 = 32;

impl BacklogProbe {
    /// Whether to try `recvmmsg` on this wake-up.
    pub fn should_try(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            false
        } else {
            true
        }
    }

    /// What the drain found.
    pub fn found(&mut self, datagrams: usize) {
        if datagrams > 0 {
            self.backoff = 0;
            self.skip = 0;
        } else {
            self.backoff = (self.backoff * 2).clamp(1, MAX_BACKOFF);
            self.skip = self.backoff;
        }
    }
}

pub struct RecvBatch {
    fd: RawFd,
    size: usize,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    got: usize,
}

impl RecvBatch {
    /// `size` datagrams per call (1..=MAX_RECV_BATCH).
    pub fn new(fd: RawFd, size: usize) -> Self {
        let size = size.clamp(1, MAX_RECV_BATCH);
        RecvBatch {
            fd,
            size,
            bufs: vec![[0u8; MAX_DATAGRAM]; size],
            // SAFETY: all-zero sockaddr_storage / iovec / mmsghdr are valid values.
            names: vec![unsafe { std::mem::zeroed() }; size],
            iov: vec![unsafe { std::mem::zeroed() }; size],
            msgs: vec![unsafe { std::mem::zeroed() }; size],
            got: 0,
        }
    }

    /// Takes up to `size` waiting datagrams without blocking; returns how many.
    pub fn recv(&mut self) -> usize {
        for i in 0..self.size {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every pointer in msgs points into buffers owned by self for this call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd,
                self.msgs.as_mut_ptr(),
                self.size as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.got = n.max(0) as usize;
        self.got
    }

    /// Datagram `i` of the last `recv`: its source (None for an address family we do not
    /// serve) and bytes.
    pub fn get(&self, i: usize) -> (Option<SocketAddr>, &[u8]) {
        let len = (self.msgs[i].msg_len as usize).min(MAX_DATAGRAM);
        // SAFETY: the kernel wrote msg_namelen bytes of a socket address into names[i].
        let from =
            unsafe { socket2::SockAddr::new(self.names[i], self.msgs[i].msg_hdr.msg_namelen) }
                .as_socket();
        (from, &self.bufs[i][..len])
    }

    pub fn len(&self) -> usize {
        self.got
    }

    pub fn is_empty(&self) -> bool {
        self.got == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn drains_a_backlog_in_one_call_with_sources_and_bytes() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 3], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = RecvBatch::new(rx.as_raw_fd(), 4);
        assert_eq!(b.recv(), 4, "one call, batch of 4");
        for i in 0..4 {
            let (from, data) = b.get(i);
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(data, &[i as u8; 3]);
        }
        assert_eq!(b.recv(), 1);
        assert_eq!(b.get(0).1, &[4u8; 3]);
        assert_eq!(b.recv(), 0, "empty socket: no block, nothing");
    }

    #[test]
    fn empty_drains_back_off_and_a_backlog_resets() {
        let mut p = BacklogProbe::default();
        let mut tries = 0;
        for _ in 0..200 {
            if p.should_try() {
                tries += 1;
                p.found(0);
            }
        }
        assert!(tries <= 12, "an idle shard probes rarely: {tries} of 200");
        // Load: a drain finds datagrams, so the next wake-up tries again, and the next.
        while !p.should_try() {}
        p.found(5);
        assert!(p.should_try());
        p.found(3);
        assert!(p.should_try());
    }
}
