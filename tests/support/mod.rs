//! Shared helpers for Warren's integration tests (`mod support;` in a test file).
//! Each test binary uses a different subset, hence the dead_code allowance
//! (here once, for every module below).
#![allow(dead_code)]

pub mod broker;
pub mod cluster;
pub mod grafana;
pub mod health;
pub mod http;
pub mod net;
pub mod node;
pub mod proc;
pub mod procfs;
pub mod prom;
pub mod record;
