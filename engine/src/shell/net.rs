//! Socket set-up and batched sends.
//!
//! Every shard binds its own UDP socket to the one media port with SO_REUSEPORT (the kernel spreads
//! flows across the group) and its own TCP listener for HTTP. Sends are collected during a loop turn
//! and flushed with one `sendmmsg`, so a turn that answers many packets pays one syscall.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive buffer per shard socket: small datagrams burst, and the default holds about 256.
pub const UDP_RCVBUF: usize = 8 << 20;
pub const UDP_SNDBUF: usize = 4 << 20;

/// Binds a non-blocking UDP socket with SO_REUSEPORT and large buffers.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    // FORCE variants need CAP_NET_ADMIN; fall back to the capped ones.
    if s.set_recv_buffer_size(UDP_RCVBUF).is_err() {
        tracing::warn!("could not set SO_RCVBUF");
    }
    let _ = s.set_send_buffer_size(UDP_SNDBUF);
    force_buffer(s.as_raw_fd(), libc::SO_RCVBUFFORCE, UDP_RCVBUF);
    force_buffer(s.as_raw_fd(), libc::SO_SNDBUFFORCE, UDP_SNDBUF);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn force_buffer(fd: RawFd, opt: libc::c_int, size: usize) {
    let v = size as libc::c_int;
    // SAFETY: fd is a valid socket; the option value is a c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Binds a TCP listener with SO_REUSEPORT (one per shard).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Whether two TCP listeners would take the same connections: the same port (not 0, which
/// picks a free one) on the same address, or on any address when either is the wildcard.
pub fn tcp_listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    let same_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    a.port() != 0 && a.port() == b.port() && same_ip
}

/// Maximum datagram we send or receive.
pub use crate::core::shard_msg::MAX_DATAGRAM;
/// Datagrams per `sendmmsg`.
pub const SEND_BATCH: usize = 64;

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message (u64s keep cmsg alignment).
type ControlBuf = [u64; 8];

/// Outgoing datagrams collected during one loop turn. Buffers are allocated once.
pub struct SendBatch {
    fd: RawFd,
    /// The source address every datagram leaves from (see [`reply_source`]); `None`: the kernel
    /// picks.
    source: Option<IpAddr>,
    control: Vec<ControlBuf>,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    control_len: usize,
    lens: Vec<usize>,
    dests: Vec<socket2::SockAddr>,
    n: usize,
    pub sent: u64,
    pub send_errors: u64,
}

impl SendBatch {
    /// A batch on socket `fd`; with `source`, every datagram is sent from that address.
    pub fn new(fd: RawFd, source: Option<IpAddr>) -> Self {
        let unspecified: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut control = vec![[0u64; 8]; SEND_BATCH];
        let control_len = source.map_or(0, |ip| {
            let mut len = 0;
            for c in control.iter_mut() {
                len = write_pktinfo(c, ip);
            }
            len
        });
        SendBatch {
            fd,
            source: source.filter(|_| control_len > 0),
            control,
            control_len,
            bufs: vec![[0; MAX_DATAGRAM]; SEND_BATCH],
            lens: vec![0; SEND_BATCH],
            dests: (0..SEND_BATCH).map(|_| unspecified.into()).collect(),
            n: 0,
            sent: 0,
            send_errors: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Queues one datagram, flushing first if the batch is full.
    pub fn push(&mut self, dest: SocketAddr, payload: &[u8]) {
        self.push_parts(dest, &[], payload);
    }

    /// Queues one datagram made of `head` then `payload` (a relay header and what it carries).
    pub fn push_parts(&mut self, dest: SocketAddr, head: &[u8], payload: &[u8]) {
        let len = head.len() + payload.len();
        if len > MAX_DATAGRAM {
            self.send_errors += 1;
            return;
        }
        if self.n == SEND_BATCH {
            self.flush();
        }
        let buf = &mut self.bufs[self.n];
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..len].copy_from_slice(payload);
        self.lens[self.n] = len;
        self.dests[self.n] = dest.into();
        self.n += 1;
    }

    /// Sends everything queued with `sendmmsg`. Datagrams the kernel refuses are counted.
    pub fn flush(&mut self) {
        let mut off = 0;
        while off < self.n {
            let count = self.n - off;
            let mut iov: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
            for i in 0..count {
                let j = off + i;
                iov[i] = libc::iovec {
                    iov_base: self.bufs[j].as_mut_ptr() as *mut libc::c_void,
                    iov_len: self.lens[j],
                };
                msgs[i].msg_hdr.msg_name = self.dests[j].as_ptr() as *mut libc::c_void;
                msgs[i].msg_hdr.msg_namelen = self.dests[j].len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                if self.source.is_some() {
                    // The kernel may not modify control data on send; each message still gets its
                    // own copy, as sendmmsg wants.
                    msgs[i].msg_hdr.msg_control = self.control[j].as_mut_ptr().cast();
                    msgs[i].msg_hdr.msg_controllen = self.control_len;
                }
            }
            // SAFETY: msgs[..count] point into buffers owned by self that outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    msgs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // Skip the datagram that failed (EAGAIN: socket buffer full; others: bad address).
                self.send_errors += 1;
                off += 1;
            } else {
                self.sent += r as u64;
                off += r as usize;
            }
        }
        self.n = 0;
    }
}

/// Writes a cmsg choosing the source address `ip` (IPv4: `IP_PKTINFO` with `ipi_spec_dst`; IPv6:
/// `IPV6_PKTINFO`); returns the control length to send.
fn write_pktinfo(buf: &mut ControlBuf, ip: IpAddr) -> usize {
    let (level, kind, data_len) = match ip {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            std::mem::size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            std::mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE of either pktinfo (at most 40 bytes) fits the 64-byte, 8-aligned buffer;
    // the msghdr only describes that buffer for the CMSG macros.
    unsafe {
        let space = libc::CMSG_SPACE(data_len as u32) as usize;
        debug_assert!(space <= std::mem::size_of::<ControlBuf>());
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_control = buf.as_mut_ptr().cast();
        h.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
        match ip {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
            }
            IpAddr::V6(v6) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
            }
        }
        space
    }
}

/// The address replies must leave from so that strict ICE agents (Pion, aioice, GStreamer's
/// libnice) accept them: the advertised candidate address, when the socket is bound to the
/// wildcard and that address is one of this host's. A socket bound to 0.0.0.0 otherwise sends from
/// whatever source the kernel prefers for the destination (a check sent to 127.0.0.1 from
/// 192.0.2.2 would be answered from 192.0.2.2, and the client drops it as "no such remote").
/// Behind 1:1 NAT the advertised address is not local: the kernel's choice is right there.
pub fn reply_source(bind: IpAddr, advertised: IpAddr) -> Option<IpAddr> {
    let same_family = bind.is_ipv4() == advertised.is_ipv4();
    let local = UdpSocket::bind(SocketAddr::new(advertised, 0)).is_ok();
    (bind.is_unspecified() && same_family && local).then_some(advertised)
}

/// The source address of the default route: a sensible advertised address when none is given.
pub fn default_route_addr() -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks a route and a source address.
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// How the kernel picks a shard's socket for an incoming datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Steering {
    /// The kernel's default: a hash of the 4-tuple.
    #[default]
    Hash,
    /// The socket of the CPU that received the packet (a classic-BPF reuseport program), so a
    /// flow whose interrupts land on a shard's CPU is read there without crossing cores.
    Cpu,
}

/// The reuseport program for `--steering cpu`: `cpus[i]` is the CPU of the i-th socket in the
/// group (bind order). A CPU with no socket returns an out-of-range index, which makes the kernel
/// fall back to its hash.
pub fn cpu_steering_program(cpus: &[usize]) -> Vec<libc::sock_filter> {
    const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
    const SKF_AD_CPU: u32 = 36;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let ld_abs_w = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    let jeq_k = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let mut prog = vec![stmt(ld_abs_w, SKF_AD_OFF.wrapping_add(SKF_AD_CPU))];
    for (index, &cpu) in cpus.iter().enumerate() {
        // if A == cpu { return index } (else skip the return)
        prog.push(libc::sock_filter {
            code: jeq_k,
            jt: 0,
            jf: 1,
            k: cpu as u32,
        });
        prog.push(stmt(ret_k, index as u32));
    }
    prog.push(stmt(ret_k, cpus.len() as u32));
    prog
}

/// Attaches the CPU steering program to a socket of the group (it applies to the whole group).
pub fn attach_cpu_steering(sock: &impl AsRawFd, cpus: &[usize]) -> io::Result<()> {
    let mut prog = cpu_steering_program(cpus);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fd is a valid socket; fprog points to `prog`, which outlives the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_listeners_collide;

    #[test]
    fn listeners_collide_on_one_port_of_overlapping_addresses() {
        let addr = |s: &str| s.parse().unwrap();
        assert!(tcp_listeners_collide(
            addr("127.0.0.1:5000"),
            addr("127.0.0.1:5000")
        ));
        assert!(tcp_listeners_collide(
            addr("0.0.0.0:5000"),
            addr("127.0.0.1:5000")
        ));
        assert!(tcp_listeners_collide(
            addr("10.0.0.1:5000"),
            addr("[::]:5000")
        ));
        assert!(!tcp_listeners_collide(
            addr("127.0.0.1:5000"),
            addr("127.0.0.1:5001")
        ));
        assert!(!tcp_listeners_collide(
            addr("127.0.0.1:5000"),
            addr("10.0.0.1:5000")
        ));
        assert!(!tcp_listeners_collide(addr("0.0.0.0:0"), addr("0.0.0.0:0")));
    }
}
