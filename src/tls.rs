//! TLS with rustls and ring, both ways.
//!
//! Client: the one configuration (webpki roots, TLS 1.2 and 1.3), built once per process and
//! shared by every outbound connection (Provet, forwarders, SMTP), because building the root
//! store is the expensive part and one config means one policy.
//!
//! Server: a listener's certificate and key from PEM files ([`ReloadableCert`]), checked to
//! belong together, and reloaded in place on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

/// Reads a PEM certificate chain and its private key and checks that they belong together.
/// The error names the file and says what is wrong, for a config error or a reload log line.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate (expected -----BEGIN CERTIFICATE-----)", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a PEM private key from {}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("the key in {} does not belong to the certificate in {}", key.display(), cert.display())
        }
        other => format!("cannot use the key in {} with {}: {other}", key.display(), cert.display()),
    })
}

/// A listener's certificate, swapped in place on reload: new handshakes get the new one, open
/// connections keep theirs, so a renewal drops nothing.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads the pair once; the error is [`load_certified_key`]'s.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadableCert, String> {
        let ck = load_certified_key(cert, key)?;
        Ok(ReloadableCert { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(Arc::new(ck)) })
    }

    /// The certificate file (for messages).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Reads the files again. On any error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let ck = load_certified_key(&self.cert, &self.key)?;
        match self.current.write() {
            Ok(mut current) => {
                *current = Arc::new(ck);
                Ok(())
            }
            Err(_) => Err("the certificate lock is poisoned".into()),
        }
    }

    /// The rustls server config for a listener that serves this certificate (HTTP/1.1 only).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| {
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .expect("ring supports TLS 1.3")
            });
        let mut config = builder.with_no_client_auth().with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}
