//! A node's ports on 127.0.0.1 and the probes that tell whether they answer.

use crate::support::net::free_ports;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

/// AMQP 0-9-1 protocol header.
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Every port one node listens on (kept across restarts).
pub(super) struct Ports {
    pub amqp: u16,
    /// Erlang distribution: what other nodes of a cluster and rabbitmqctl use.
    pub dist: u16,
    pub management: Option<u16>,
    pub tls: Option<u16>,
}

impl Ports {
    /// Free ports for a node with the listeners asked for.
    pub fn pick(management: bool, tls: bool) -> Ports {
        let mut ports = free_ports(2 + usize::from(management) + usize::from(tls)).into_iter();
        Ports {
            amqp: ports.next().unwrap(),
            dist: ports.next().unwrap(),
            management: management.then(|| ports.next().unwrap()),
            tls: tls.then(|| ports.next().unwrap()),
        }
    }
}

pub(super) fn local(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Sends the AMQP 0-9-1 header and checks that the reply starts with a
/// Connection.Start method frame (type 1, channel 0, class 10, method 10).
pub fn amqp_answers(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&local(port), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(AMQP_HEADER)?;
        let mut buf = [0u8; 11];
        s.read_exact(&mut buf)?;
        Ok(buf[0] == 1 && buf[1..3] == [0, 0] && buf[7..11] == [0, 10, 0, 10])
    };
    attempt().unwrap_or(false)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_is_open(port: u16) -> bool {
    TcpStream::connect_timeout(&local(port), Duration::from_secs(1)).is_ok()
}
