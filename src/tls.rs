//! The one rustls client configuration: ring as the provider, the webpki (Mozilla) roots, TLS 1.2
//! and 1.3. Built once per process and shared by every outbound connection (Provet, forwarders,
//! SMTP), because building the root store is the expensive part and one config means one policy.

use std::sync::{Arc, OnceLock};

/// The shared client config, built on first use.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            Arc::new(client_config_trusting(roots))
        })
        .clone()
}

/// A client config with other trust anchors (tests use a throwaway CA).
pub fn client_config_trusting(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    // The ring provider supports both default protocol versions, so this cannot fail; should
    // a future rustls disagree, TLS 1.3 alone is still a working policy.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("ring supports TLS 1.3")
        });
    builder.with_root_certificates(roots).with_no_client_auth()
}
