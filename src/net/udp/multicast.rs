//! Multicast groups and the socket options of a datagram port: TTL,
//! loopback, outgoing interface, broadcast. IPv4 and IPv6 alike; the
//! port's own address family decides which option is set.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use socket2::{InterfaceIndexOrAddress, Socket};

use super::DatagramTransport;

/// The interface a multicast group is joined on, or multicast datagrams
/// leave by.
///
/// IPv4 names an interface by one of its addresses, or (for joining) by
/// index; IPv6 by index only (`if_nametoindex`; the loopback interface is
/// usually 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulticastInterface {
    /// Let the kernel choose by its routes (`INADDR_ANY`, index 0).
    Any,
    /// The IPv4 interface with this address, e.g. `127.0.0.1` for loopback.
    Address(Ipv4Addr),
    /// The interface with this index.
    Index(u32),
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_owned())
}

impl DatagramTransport {
    fn is_ipv6(&self) -> bool {
        self.host().is_ipv6()
    }

    fn membership(
        &self,
        group: IpAddr,
        interface: MulticastInterface,
        join: bool,
    ) -> io::Result<()> {
        self.port.with_socket(|socket| match (group, interface) {
            (IpAddr::V4(group), interface) => {
                let interface = match interface {
                    MulticastInterface::Any => {
                        InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED)
                    }
                    MulticastInterface::Address(addr) => InterfaceIndexOrAddress::Address(addr),
                    MulticastInterface::Index(index) => InterfaceIndexOrAddress::Index(index),
                };
                if join {
                    socket.join_multicast_v4_n(&group, &interface)
                } else {
                    socket.leave_multicast_v4_n(&group, &interface)
                }
            }
            (IpAddr::V6(group), MulticastInterface::Any | MulticastInterface::Index(_)) => {
                let index = match interface {
                    MulticastInterface::Index(index) => index,
                    _ => 0,
                };
                if join {
                    socket.join_multicast_v6(&group, index)
                } else {
                    socket.leave_multicast_v6(&group, index)
                }
            }
            (IpAddr::V6(_), MulticastInterface::Address(_)) => Err(invalid(
                "an IPv6 group is joined on an interface index, not an IPv4 address",
            )),
        })
    }

    /// Joins the multicast `group` on `interface` (Twisted's `joinGroup`):
    /// datagrams sent to the group and to this port's port number arrive.
    /// Bind the port to the group's port (and, to receive nothing else, to
    /// the group address itself); with several listeners on one machine,
    /// set [`DatagramConfig::reuse_address`](super::DatagramConfig::reuse_address).
    ///
    /// # Errors
    ///
    /// The kernel refused (not a multicast address, no such interface, a
    /// group of the other address family), or the port stopped.
    ///
    /// # Examples
    ///
    /// On the loopback interface, which needs no network:
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    /// use twill::{Bytes, DatagramConfig, DatagramProtocol, MulticastInterface, Reactor};
    ///
    /// struct Listener;
    /// impl DatagramProtocol for Listener {
    ///     fn datagram_received(&mut self, data: Bytes, _: SocketAddr) {
    ///         assert_eq!(&data[..], b"to the group");
    ///         twill::stop();
    ///     }
    /// }
    ///
    /// let group = Ipv4Addr::new(239, 255, 77, 78);
    /// let lo = MulticastInterface::Address(Ipv4Addr::LOCALHOST);
    /// let reactor = Reactor::new()?;
    /// let config = DatagramConfig::new().reuse_address(true);
    /// let listener = reactor.listen_udp_with((group, 0), &config, Listener)?;
    /// listener.join_group(IpAddr::V4(group), lo)?;
    ///
    /// struct Quiet;
    /// impl DatagramProtocol for Quiet {
    ///     fn datagram_received(&mut self, _: Bytes, _: SocketAddr) {}
    /// }
    /// let sender = reactor.listen_udp("127.0.0.1:0", Quiet)?;
    /// sender.set_outgoing_interface(lo)?;
    /// sender.set_loopback_mode(true)?;
    /// sender.write("to the group", SocketAddr::from((group, listener.host().port())))?;
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn join_group(&self, group: IpAddr, interface: MulticastInterface) -> io::Result<()> {
        self.membership(group, interface, true)
    }

    /// Leaves a group joined with [`join_group`](Self::join_group)
    /// (Twisted's `leaveGroup`).
    ///
    /// # Errors
    ///
    /// As `join_group`; also a group that was not joined.
    pub fn leave_group(&self, group: IpAddr, interface: MulticastInterface) -> io::Result<()> {
        self.membership(group, interface, false)
    }

    /// Whether this port's multicast datagrams are also delivered to
    /// listeners on this machine (Twisted's `setLoopbackMode`;
    /// `IP_MULTICAST_LOOP` / `IPV6_MULTICAST_LOOP`; on by default).
    ///
    /// # Errors
    ///
    /// The port stopped, or the kernel refused.
    pub fn set_loopback_mode(&self, on: bool) -> io::Result<()> {
        let v6 = self.is_ipv6();
        self.port.with_socket(|socket| {
            if v6 {
                socket.set_multicast_loop_v6(on)
            } else {
                socket.set_multicast_loop_v4(on)
            }
        })
    }

    /// Whether multicast loopback is on; see
    /// [`set_loopback_mode`](Self::set_loopback_mode).
    ///
    /// # Errors
    ///
    /// The port stopped.
    pub fn loopback_mode(&self) -> io::Result<bool> {
        let v6 = self.is_ipv6();
        self.port.with_socket(|socket| {
            if v6 {
                socket.multicast_loop_v6()
            } else {
                socket.multicast_loop_v4()
            }
        })
    }

    /// How many hops this port's multicast datagrams may travel (Twisted's
    /// `setTTL`; `IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS`; 1 by default:
    /// the local network only).
    ///
    /// # Errors
    ///
    /// The port stopped, or the kernel refused (over 255).
    pub fn set_multicast_ttl(&self, ttl: u32) -> io::Result<()> {
        let v6 = self.is_ipv6();
        self.port.with_socket(|socket| {
            if v6 {
                socket.set_multicast_hops_v6(ttl)
            } else {
                socket.set_multicast_ttl_v4(ttl)
            }
        })
    }

    /// The multicast TTL; see [`set_multicast_ttl`](Self::set_multicast_ttl).
    ///
    /// # Errors
    ///
    /// The port stopped.
    pub fn multicast_ttl(&self) -> io::Result<u32> {
        let v6 = self.is_ipv6();
        self.port.with_socket(|socket| {
            if v6 {
                socket.multicast_hops_v6()
            } else {
                socket.multicast_ttl_v4()
            }
        })
    }

    /// The TTL (IPv4) or hop limit (IPv6) of this port's unicast datagrams.
    ///
    /// # Errors
    ///
    /// The port stopped, or the kernel refused.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let v6 = self.is_ipv6();
        self.port.with_socket(|socket| {
            if v6 {
                socket.set_unicast_hops_v6(ttl)
            } else {
                socket.set_ttl(ttl)
            }
        })
    }

    /// The interface this port's multicast datagrams leave by
    /// (Twisted's `setOutgoingInterface`; `IP_MULTICAST_IF` /
    /// `IPV6_MULTICAST_IF`). An IPv4 port takes an address
    /// (or [`MulticastInterface::Any`]), an IPv6 port an index.
    ///
    /// # Errors
    ///
    /// The wrong kind of interface for the port's family, the port
    /// stopped, or the kernel refused.
    pub fn set_outgoing_interface(&self, interface: MulticastInterface) -> io::Result<()> {
        let v6 = self.is_ipv6();
        self.port
            .with_socket(|socket| set_outgoing(socket, v6, interface))
    }

    /// Whether this port may send to broadcast addresses (Twisted's
    /// `setBroadcastAllowed`, `SO_BROADCAST`); without it such a write
    /// fails with `PermissionDenied`.
    ///
    /// # Errors
    ///
    /// The port stopped, or the kernel refused.
    pub fn set_broadcast_allowed(&self, on: bool) -> io::Result<()> {
        self.port.with_socket(|socket| socket.set_broadcast(on))
    }

    /// Whether broadcast is allowed; see
    /// [`set_broadcast_allowed`](Self::set_broadcast_allowed).
    ///
    /// # Errors
    ///
    /// The port stopped.
    pub fn broadcast_allowed(&self) -> io::Result<bool> {
        self.port.with_socket(|socket| socket.broadcast())
    }
}

fn set_outgoing(socket: &Socket, v6: bool, interface: MulticastInterface) -> io::Result<()> {
    match (v6, interface) {
        (false, MulticastInterface::Any) => socket.set_multicast_if_v4(&Ipv4Addr::UNSPECIFIED),
        (false, MulticastInterface::Address(addr)) => socket.set_multicast_if_v4(&addr),
        (false, MulticastInterface::Index(_)) => Err(invalid(
            "an IPv4 port's outgoing multicast interface is named by its address",
        )),
        (true, MulticastInterface::Any) => socket.set_multicast_if_v6(0),
        (true, MulticastInterface::Index(index)) => socket.set_multicast_if_v6(index),
        (true, MulticastInterface::Address(_)) => Err(invalid(
            "an IPv6 port's outgoing multicast interface is named by its index",
        )),
    }
}
