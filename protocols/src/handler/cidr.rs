//! [`Cidr`]: an IPv4 or IPv6 subnet, parsed from `192.168.0.0/24` or
//! `2001:db8::/32`.

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 subnet: an address and a prefix length, as in
/// `10.0.0.0/8` or `2001:db8::/32`. Netty's `IpSubnetFilterRule` subnet.
///
/// The host bits are cleared (`192.168.1.7/24` is `192.168.1.0/24`). An
/// address without `/prefix` is a single host (`/32` or `/128`).
///
/// An IPv4 subnet also contains the IPv4-mapped IPv6 form of its addresses
/// (`::ffff:10.1.2.3` is in `10.0.0.0/8`), which is how a dual-stack
/// listener reports IPv4 peers; otherwise IPv4 subnets never contain IPv6
/// addresses and the other way round.
///
/// # Examples
///
/// ```
/// use twill_protocols::handler::Cidr;
///
/// let lan: Cidr = "192.168.1.7/24".parse()?;
/// assert_eq!(lan.to_string(), "192.168.1.0/24");
/// assert!(lan.contains("192.168.1.200".parse()?));
/// assert!(!lan.contains("192.168.2.1".parse()?));
///
/// let doc: Cidr = "2001:db8::/32".parse()?;
/// assert!(doc.contains("2001:db8:ffff::1".parse()?));
/// assert!(!doc.contains("10.0.0.1".parse()?));
///
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrParseError {
    /// The part before `/` is not an IP address.
    Address(String),
    /// The part after `/` is not a number.
    Prefix(String),
    /// The prefix is longer than the address (32 bits for IPv4, 128 for
    /// IPv6).
    PrefixTooLong {
        /// The prefix length given.
        prefix_len: u8,
        /// The longest allowed.
        max: u8,
    },
}

impl fmt::Display for CidrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrParseError::Address(s) => write!(f, "not an IP address: {s:?}"),
            CidrParseError::Prefix(s) => write!(f, "not a prefix length: {s:?}"),
            CidrParseError::PrefixTooLong { prefix_len, max } => {
                write!(f, "prefix length {prefix_len} is over {max}")
            }
        }
    }
}

impl Error for CidrParseError {}

impl Cidr {
    /// The subnet of `address` with a `prefix_len`-bit network part; host
    /// bits are cleared.
    ///
    /// # Errors
    ///
    /// [`CidrParseError::PrefixTooLong`] if `prefix_len` is over 32 (IPv4)
    /// or 128 (IPv6).
    pub fn new(address: IpAddr, prefix_len: u8) -> Result<Cidr, CidrParseError> {
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(CidrParseError::PrefixTooLong { prefix_len, max });
        }
        let network = match address {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix_len))),
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }

    /// The single-host subnet of `address` (`/32` or `/128`).
    pub fn host(address: IpAddr) -> Cidr {
        let prefix_len = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Cidr {
            network: address,
            prefix_len,
        }
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `address` is in this subnet (see the type's docs for
    /// IPv4-mapped IPv6 addresses).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => self.contains_v4(net, a),
            (IpAddr::V4(net), IpAddr::V6(a)) => {
                a.to_ipv4_mapped().is_some_and(|a| self.contains_v4(net, a))
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.prefix_len) == u128::from(net)
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    fn contains_v4(&self, net: Ipv4Addr, a: Ipv4Addr) -> bool {
        u32::from(a) & mask_v4(self.prefix_len) == u32::from(net)
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Cidr, CidrParseError> {
        let s = s.trim();
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrParseError::Address(address.to_owned()))?;
        match prefix {
            None => Ok(Cidr::host(address)),
            Some(prefix) => {
                let digits_only = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
                let prefix_len: u8 = digits_only
                    .then(|| prefix.parse().ok())
                    .flatten()
                    .ok_or_else(|| CidrParseError::Prefix(prefix.to_owned()))?;
                Cidr::new(address, prefix_len)
            }
        }
    }
}

impl From<IpAddr> for Cidr {
    fn from(address: IpAddr) -> Cidr {
        Cidr::host(address)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}
