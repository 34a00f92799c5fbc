//! A sandbox's own network namespace: made by the supervisor's launcher (`unshare` with the
//! pid, ipc and uts namespaces, see [`super::supervisor`]), `lo` brought up there, held by the
//! supervisor for the sandbox's life and named by `/proc/<supervisor>/ns/net`; it ends with
//! the last process in it. The node agent plugs interfaces into it (CNI) and connects into it
//! ([`connect_in`], for port forwarding).
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path that names the network namespace of process `pid`.
pub fn netns_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Brings the loopback interface of the caller's network namespace up (`ip link set lo up`).
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into the ifreq we own.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a TCP connection to `addr` from inside the network namespace `netns` (a thread of
/// its own enters it; the socket stays in it). Blocking: call it from a blocking task.
pub fn connect_in(netns: &Path, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            TcpStream::connect_timeout(&addr, timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_in_own_namespace_reaches_a_local_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let own = netns_of(std::process::id());
        let s = connect_in(&own, addr, Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = connect_in(&own, closed, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(connect_in(Path::new("/nonexistent/ns"), addr, Duration::from_secs(1)).is_err());
    }
}
