//! Plain networking for the tests: free ports on 127.0.0.1, a minimal HTTP
//! GET and percent-encoding. No client library, so a test does not share
//! code (or bugs) with the server under test.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `n` distinct ports nobody listened on a moment ago (the kernel's picks;
/// every listener is held until the last one is picked, so they differ).
/// The caller hands them to a server that binds them soon after.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// One free port (see [`free_ports`]); also a port where nothing listens.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A plain HTTP/1.0 GET with extra request headers: (status, body), or the
/// I/O error (refused, timed out) so callers can poll a server that is not
/// up yet.
pub fn try_get(url: &str, headers: &[(&str, &str)]) -> io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{host}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// [`try_get`] without extra headers; panics when the server cannot be reached.
pub fn http_get(url: &str) -> (u16, String) {
    try_get(url, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
