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

/// `GET /api/overview` as guest answers 200.
pub(super) fn answers(port: u16) -> bool {
    // "Z3Vlc3Q6Z3Vlc3Q=" is base64("guest:guest").
    let auth = [("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")];
    try_get(&format!("http://127.0.0.1:{port}/api/overview"), &auth)
        .is_ok_and(|(status, _)| status == 200)
}

impl RabbitNode {
    /// `http://guest:guest@127.0.0.1:<port>` when management is enabled.
    pub fn management_url(&self) -> Option<String> {
        self.ports
            .management
            .map(|p| format!("http://guest:guest@127.0.0.1:{p}"))
    }
}
