//! Comet sockets: a multicast group (IPv4 or IPv6, TTL/hops 1, loop on) and/or a unicast
//! socket sending to a peer list. Blocking sockets polled with a timeout, on the cluster thread.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::io::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::{ClusterConfig, ClusterError};

/// Receive buffer: larger than any comet so oversized datagrams are seen (and dropped) whole.
pub(crate) const RECV_BUFFER_BYTES: usize = 2048;

/// The multicast interface, from `cluster.interface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MulticastInterface {
    Default,
    Index(u32),
    Address(IpAddr),
}

pub(crate) fn parse_interface(spec: Option<&str>) -> Result<MulticastInterface, ClusterError> {
    let Some(spec) = spec else {
        return Ok(MulticastInterface::Default);
    };
    if let Ok(addr) = spec.parse::<IpAddr>() {
        return Ok(MulticastInterface::Address(addr));
    }
    let name = std::ffi::CString::new(spec)
        .map_err(|_| ClusterError::Config(format!("cluster.interface {spec:?} contains NUL")))?;
    // SAFETY: `name` is a valid NUL-terminated C string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(ClusterError::Config(format!(
            "cluster.interface {spec:?}: no such interface ({})",
            io::Error::last_os_error()
        )));
    }
    Ok(MulticastInterface::Index(index))
}

pub(crate) struct Transport {
    unicast: Option<Socket>,
    multicast: Option<(Socket, SockAddr)>,
    peers: Vec<SockAddr>,
}

fn socket_err(op: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> ClusterError {
    move |source| ClusterError::Socket { op, addr, source }
}

impl Transport {
    /// Opens the sockets `cfg` names; `bound`, when given, is the unicast comet socket (already
    /// bound by the caller, e.g. to port 0) and `cfg.listen` is not bound again.
    pub(crate) fn open(
        cfg: &ClusterConfig,
        bound: Option<std::net::UdpSocket>,
    ) -> Result<Transport, ClusterError> {
        let unicast = match (bound, cfg.listen) {
            (Some(socket), _) => Some(Socket::from(socket)),
            (None, Some(listen)) => {
                let socket = Socket::new(
                    Domain::for_address(listen),
                    Type::DGRAM,
                    Some(Protocol::UDP),
                )
                .map_err(socket_err("socket", listen))?;
                if listen.is_ipv6() {
                    socket
                        .set_only_v6(true)
                        .map_err(socket_err("IPV6_V6ONLY", listen))?;
                }
                socket
                    .bind(&listen.into())
                    .map_err(socket_err("bind", listen))?;
                Some(socket)
            }
            (None, None) => None,
        };
        let multicast = match cfg.group {
            Some(group) => {
                let iface = parse_interface(cfg.interface.as_deref())?;
                Some((open_multicast(group, &iface)?, SockAddr::from(group)))
            }
            None => None,
        };
        Ok(Transport {
            unicast,
            multicast,
            peers: cfg.peers.iter().map(|&p| SockAddr::from(p)).collect(),
        })
    }

    /// The unicast socket's bound address (port 0 resolved).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.unicast
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .and_then(|a| a.as_socket())
    }

    /// Sends one comet to the group and every peer; returns (datagrams sent, errors).
    pub(crate) fn send(&self, bytes: &[u8]) -> (u64, u64) {
        let (mut sent, mut errors) = (0, 0);
        let mut count = |result: io::Result<usize>, to: &SockAddr| match result {
            Ok(_) => sent += 1,
            Err(e) => {
                errors += 1;
                tracing::debug!(to = ?to.as_socket(), error = %e, "comet send failed");
            }
        };
        if let Some((socket, group)) = &self.multicast {
            count(socket.send_to(bytes, group), group);
        }
        if let Some(socket) = &self.unicast {
            for peer in &self.peers {
                count(socket.send_to(bytes, peer), peer);
            }
        }
        (sent, errors)
    }

    /// Waits up to `timeout_ms` for a datagram on either socket.
    pub(crate) fn recv(
        &self,
        buf: &mut [MaybeUninit<u8>; RECV_BUFFER_BYTES],
        timeout_ms: u64,
    ) -> io::Result<Option<(usize, Option<SocketAddr>)>> {
        let sockets: Vec<&Socket> = self
            .unicast
            .iter()
            .chain(self.multicast.iter().map(|(s, _)| s))
            .collect();
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = timeout_ms.min(i32::MAX as u64) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(err)
            };
        }
        for (fd, socket) in fds.iter().zip(sockets) {
            if fd.revents & (libc::POLLIN | libc::POLLERR) != 0 {
                match socket.recv_from(&mut buf[..]) {
                    Ok((len, from)) => return Ok(Some((len, from.as_socket()))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }
}

fn open_multicast(group: SocketAddr, iface: &MulticastInterface) -> Result<Socket, ClusterError> {
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err("socket", group))?;
    socket
        .set_reuse_address(true)
        .map_err(socket_err("SO_REUSEADDR", group))?;
    // Several nodes (namespaces, or tests) may listen on the group port on one host.
    socket
        .set_reuse_port(true)
        .map_err(socket_err("SO_REUSEPORT", group))?;
    match group.ip() {
        IpAddr::V4(addr) => {
            let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), group.port());
            socket.bind(&any.into()).map_err(socket_err("bind", any))?;
            let join = match iface {
                MulticastInterface::Default => {
                    InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED)
                }
                MulticastInterface::Index(i) => InterfaceIndexOrAddress::Index(*i),
                MulticastInterface::Address(IpAddr::V4(a)) => InterfaceIndexOrAddress::Address(*a),
                MulticastInterface::Address(IpAddr::V6(_)) => {
                    return Err(ClusterError::Config(
                        "cluster.interface is an IPv6 address but the group is IPv4".into(),
                    ))
                }
            };
            socket
                .join_multicast_v4_n(&addr, &join)
                .map_err(socket_err("IP_ADD_MEMBERSHIP", group))?;
            // Only the joined group, not every group another socket joined on this port.
            socket
                .set_multicast_all_v4(false)
                .map_err(socket_err("IP_MULTICAST_ALL", group))?;
            socket
                .set_multicast_loop_v4(true)
                .map_err(socket_err("IP_MULTICAST_LOOP", group))?;
            socket
                .set_multicast_ttl_v4(1)
                .map_err(socket_err("IP_MULTICAST_TTL", group))?;
            match join {
                InterfaceIndexOrAddress::Index(index) => set_multicast_if_v4_index(&socket, index)
                    .map_err(socket_err("IP_MULTICAST_IF", group))?,
                InterfaceIndexOrAddress::Address(a) if !a.is_unspecified() => socket
                    .set_multicast_if_v4(&a)
                    .map_err(socket_err("IP_MULTICAST_IF", group))?,
                InterfaceIndexOrAddress::Address(_) => {}
            }
        }
        IpAddr::V6(addr) => {
            socket
                .set_only_v6(true)
                .map_err(socket_err("IPV6_V6ONLY", group))?;
            let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), group.port());
            socket.bind(&any.into()).map_err(socket_err("bind", any))?;
            let index = match iface {
                MulticastInterface::Default => 0,
                MulticastInterface::Index(i) => *i,
                MulticastInterface::Address(_) => {
                    return Err(ClusterError::Config(
                        "an IPv6 group needs cluster.interface as an interface name".into(),
                    ))
                }
            };
            socket
                .join_multicast_v6(&addr, index)
                .map_err(socket_err("IPV6_JOIN_GROUP", group))?;
            socket
                .set_multicast_all_v6(false)
                .map_err(socket_err("IPV6_MULTICAST_ALL", group))?;
            socket
                .set_multicast_loop_v6(true)
                .map_err(socket_err("IPV6_MULTICAST_LOOP", group))?;
            socket
                .set_multicast_hops_v6(1)
                .map_err(socket_err("IPV6_MULTICAST_HOPS", group))?;
            if index != 0 {
                socket
                    .set_multicast_if_v6(index)
                    .map_err(socket_err("IPV6_MULTICAST_IF", group))?;
            }
        }
    }
    Ok(socket)
}

/// IP_MULTICAST_IF by interface index (Linux accepts a `struct ip_mreqn`).
fn set_multicast_if_v4_index(socket: &Socket, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: the option value points to a live ip_mreqn of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn as *const libc::ip_mreqn as *const libc::c_void,
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
