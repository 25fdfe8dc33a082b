//! `--steering cpu`: a classic-BPF reuseport program hands each datagram to the socket of the CPU
//! that received it. On loopback the receiving CPU is the sender's, so a client pinned to CPU n
//! must end up on shard n, with nothing forwarded between shards after setup.

use crate::common;

use std::time::Duration;

use common::udp_client::UdpClient;
use common::{http, load_wav, metric};
use tern_engine::agent::AgentKind;
use tern_engine::shell::net::{cpu_steering_program, Steering};

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; we set one CPU for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn program_maps_cpus_to_socket_indexes() {
    let p = cpu_steering_program(&[4, 6]);
    // load CPU; (jeq 4, ret 0); (jeq 6, ret 1); ret 2 (out of range: kernel hash fallback)
    assert_eq!(p.len(), 6);
    assert_eq!((p[1].k, p[2].k), (4, 0));
    assert_eq!((p[3].k, p[4].k), (6, 1));
    assert_eq!(p[5].k, 2);
}

#[test]
fn sessions_land_on_the_shard_of_the_receiving_cpu() {
    // A check that cannot run must not pass: CI and the bench machines have at least two CPUs.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs; this machine has {cpus}"
    );
    let e = common::engine::start_with(2, 16, AgentKind::Echo, |c| c.steering = Steering::Cpu);
    let http_addr = e.http;
    for cpu in [1usize, 0, 1] {
        let handle = std::thread::spawn(move || {
            pin_to(cpu);
            let mut c = UdpClient::connect(http_addr, load_wav("hello-24k.wav").1);
            assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
            c.run_until(Duration::from_millis(300), |_| false);
            c
        });
        let client = handle.join().unwrap();
        let m = String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap();
        let on = |shard: usize| metric(&m, "tern_sessions", &format!("shard=\"{shard}\""));
        assert!(
            on(cpu) >= 1.0,
            "a client on CPU {cpu} has its session on shard {cpu}\n{m}"
        );
        drop(client);
    }
    let m = String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap();
    let (s0, s1) = (
        metric(&m, "tern_sessions", "shard=\"0\""),
        metric(&m, "tern_sessions", "shard=\"1\""),
    );
    assert_eq!(
        (s0, s1),
        (1.0, 2.0),
        "sessions per shard follow the clients' CPUs"
    );
}
