//! Free loopback TCP ports for proxies and backends started by tests.
//!
//! Ports are taken BELOW the kernel's ephemeral range (`ip_local_port_range`), so that
//! neither `bind(0)` nor the source port of an outgoing connection (made by HAProxy, Nginx
//! or a test client) can take a port between the moment it is handed out and the moment the
//! proxy binds it. Within one test process a port is never handed out twice; between
//! processes, the starting point depends on the PID and every candidate is checked by
//! binding it.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Lowest port handed out.
const LOWEST_PORT: u16 = 12_000;

/// A free port on 127.0.0.1, not handed out before by this process. It is free when
/// returned; the caller binds it (directly or through a proxy config) soon after.
/// Panics when no port is left (thousands per process are available).
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let (low, high) = port_range();
    let span = u32::from(high - low);
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % span));
    let used = USED.get_or_init(Default::default);
    for _ in 0..span {
        let port = low + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port left in {low}..{high}");
}

/// `127.0.0.1:<free_port()>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A listener bound on a port from [`free_port`], retrying if the port was taken meanwhile.
pub fn bind_free() -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(free_addr()) {
            return listener;
        }
    }
    panic!("could not bind any free loopback port");
}

/// `[LOWEST_PORT, start of the ephemeral range)`, or a fixed range when the ephemeral range
/// is unusual.
fn port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST_PORT + 1_000 {
        (LOWEST_PORT, ephemeral_low)
    } else {
        (LOWEST_PORT, 32_768)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_within_a_process() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        let (low, high) = port_range();
        assert!(ports.iter().all(|p| (low..high).contains(p)));
    }
}
