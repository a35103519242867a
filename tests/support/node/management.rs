//! The `rabbitmq_management` plugin on a node: its configuration, its URL
//! and the check that its HTTP API answers.

use super::RabbitNode;
use crate::support::net::try_get;

/// `enabled_plugins` of a node with management.
pub(super) const PLUGINS: &str = "[rabbitmq_management].\n";

/// rabbitmq.conf lines: the API on 127.0.0.1:`port`.
pub(super) fn conf(port: u16) -> String {
    format!("management.tcp.port = {port}\nmanagement.tcp.ip = 127.0.0.1\n")
}

/// "Z3Vlc3Q6Z3Vlc3Q=" is base64("guest:guest").
const AUTH: [(&str, &str); 1] = [("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")];

/// `GET /api/overview` as guest answers 200.
pub(super) fn answers(port: u16) -> bool {
    try_get(&format!("http://127.0.0.1:{port}/api/overview"), &AUTH)
        .is_ok_and(|(status, _)| status == 200)
}

impl RabbitNode {
    /// `http://guest:guest@127.0.0.1:<port>` when management is enabled.
    pub fn management_url(&self) -> Option<String> {
        self.ports
            .management
            .map(|p| format!("http://guest:guest@127.0.0.1:{p}"))
    }

    /// The body of `GET path` on the management API, as guest; panics
    /// unless it answers 200.
    pub fn management_get(&self, path: &str) -> String {
        let port = self.ports.management.expect("management enabled");
        match try_get(&format!("http://127.0.0.1:{port}{path}"), &AUTH) {
            Ok((200, body)) => body,
            other => panic!("GET {path} on the management API: {other:?}"),
        }
    }
}
