//! A node's `amqps` listener: the PEM files it presents (copied into the
//! node's directory, so a restart still finds them after the test's own
//! files are gone), its rabbitmq.conf lines and its URL.

use super::RabbitNode;
use std::fs;
use std::path::Path;

/// An `amqps` listener: its port and whether it demands a client certificate.
pub(super) struct TlsListener {
    pub port: u16,
    pub require_client_cert: bool,
}

/// What [`RabbitNode::start_with_tls`] was given.
pub(super) struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub require_client_cert: bool,
}

impl RabbitNode {
    /// `amqps://guest:guest@localhost:<tls port>/%2f` (`localhost`, so the
    /// host name is checked against the certificate's DNS SAN); panics if
    /// the node has no TLS listener.
    pub fn amqps_url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.tls_port())
    }

    /// The TLS listener's port; panics if the node has none.
    pub fn tls_port(&self) -> u16 {
        self.tls
            .as_ref()
            .expect("RabbitNode: started without TLS (use start_with_tls)")
            .port
    }

    /// Copies the PEM files to `tls/{ca,cert,key}.pem` in the node's directory.
    pub(super) fn copy_tls_files(&self, files: &TlsFiles) {
        let dir = self.path("tls");
        fs::create_dir_all(&dir).expect("RabbitNode: cannot create tls/");
        for (from, name) in [
            (files.ca, "ca.pem"),
            (files.cert, "cert.pem"),
            (files.key, "key.pem"),
        ] {
            fs::copy(from, dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "RabbitNode: cannot copy {} to tls/{name}: {e}",
                    from.display()
                )
            });
        }
    }

    /// rabbitmq.conf lines for the listener.
    pub(super) fn tls_conf(&self, tls: &TlsListener) -> String {
        let file = |name: &str| self.path("tls").join(name).display().to_string();
        let (verify, fail) = match tls.require_client_cert {
            true => ("verify_peer", "true"),
            false => ("verify_none", "false"),
        };
        format!(
            "listeners.ssl.default = 127.0.0.1:{}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = {verify}\n\
             ssl_options.fail_if_no_peer_cert = {fail}\n",
            tls.port,
            file("ca.pem"),
            file("cert.pem"),
            file("key.pem"),
        )
    }
}
