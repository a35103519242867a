//! Checks the private-broker test support (tests/support/node/): start, stop,
//! restart and kill a throw-away RabbitMQ node. The shared broker is not used.
mod support;

use std::time::Instant;

use support::node::{RabbitNode, amqp_answers, port_is_open};

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
    assert!(amqp_answers(port));

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
    assert!(amqp_answers(port));

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
    assert!(amqp_answers(port));

    // restart() of a running node stops it first.
    node.restart();
    assert!(node.is_running());
    assert!(amqp_answers(port));

    drop(node);
    assert!(!port_is_open(port), "port {port} still open after drop");
}

#[test]
fn management_plugin() {
    let t = Instant::now();
    let mut node = RabbitNode::start_with_management();
    eprintln!("start with management: {:?}", t.elapsed());
    assert!(node.is_running());
    assert!(amqp_answers(node.amqp_port()));
    let url = node.management_url().expect("management enabled");
    let mport: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://guest:guest@127.0.0.1:"));
    assert!(port_is_open(mport));
    node.kill();
    assert!(!node.is_running());
    assert!(!port_is_open(mport));
    assert!(!port_is_open(node.amqp_port()));
}
