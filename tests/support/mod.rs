//! Shared helpers for Warren's integration tests (`mod support;` in a test file).
//! Each test binary uses a different subset, hence the dead_code allowance.
#![allow(dead_code)]

pub mod broker;
pub mod http;
pub mod node;
pub mod proc;
pub mod prom;
