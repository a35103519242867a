//! Checks the private-broker test support (tests/support/node.rs): start, stop,
//! restart and kill a throw-away RabbitMQ node. The shared broker is not used.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::node::{RabbitNode, port_is_open};

/// AMQP 0-9-1 handshake: the server must reply with a Connection.Start frame.
fn answers_amqp(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame = [0u8; 11];
    s.read_exact(&mut frame).is_ok() && frame[0] == 1 && frame[7..11] == [0, 10, 0, 10]
}

#[test]
fn start_stop_restart_kill() {
    let t = Instant::now();
    let mut node = RabbitNode::start();
    eprintln!("start: {:?}", t.elapsed());
    let port = node.amqp_port();
    assert_ne!(port, 5672, "must not be the shared broker's port");
    assert_eq!(
        node.amqp_url(),
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
    );
    assert_eq!(node.management_url(), None);
    assert!(node.is_running());
    assert!(answers_amqp(port));

    let t = Instant::now();
    node.stop();
    eprintln!("stop: {:?}", t.elapsed());
    assert!(!node.is_running());
    assert!(!port_is_open(port), "port {port} still open after stop");
    node.stop(); // no-op when stopped

    let t = Instant::now();
    node.restart();
    eprintln!("restart after stop: {:?}", t.elapsed());
    assert!(node.is_running());
    assert_eq!(node.amqp_port(), port);
    assert!(answers_amqp(port));

    let t = Instant::now();
    node.kill();
    eprintln!("kill: {:?}", t.elapsed());
    assert!(!node.is_running());
    assert!(!port_is_open(port), "port {port} still open after kill");
    node.kill(); // no-op when killed

    let t = Instant::now();
    node.restart();
    eprintln!("restart after kill: {:?}", t.elapsed());
    assert!(node.is_running());
    assert!(answers_amqp(port));

    // restart() of a running node stops it first.
    node.restart();
    assert!(node.is_running());
    assert!(answers_amqp(port));

    drop(node);
    assert!(!port_is_open(port), "port {port} still open after drop");
}

#[test]
fn management_plugin() {
    let t = Instant::now();
    let mut node = RabbitNode::start_with_management();
    eprintln!("start with management: {:?}", t.elapsed());
    assert!(node.is_running());
    assert!(answers_amqp(node.amqp_port()));
    let url = node.management_url().expect("management enabled");
    let mport: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://guest:guest@127.0.0.1:"));
    assert!(port_is_open(mport));
    node.kill();
    assert!(!node.is_running());
    assert!(!port_is_open(mport));
    assert!(!port_is_open(node.amqp_port()));
}
