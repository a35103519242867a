//! The process-wide TLS crypto provider.
//!
//! reqwest (http handler, OTLP export) and kube are built without a bundled
//! provider, to avoid aws-lc's C build; rustls then needs one installed per
//! process before the first TLS client is built. The entry points call this:
//! the binary's `main`, and for library users [`App::run`](crate::App::run),
//! [`telemetry::init`](crate::telemetry::init) and the http handler's
//! constructor in `Builtin::from_config`.

/// Installs ring as the process-wide rustls crypto provider. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
