//! One TLS crypto provider for the whole process: ring (rustls), which lettre and sqlx use
//! too, so only one crypto stack is built. Installed before any HTTP client is made.

/// Installs ring as the process's rustls provider; later calls do nothing.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
