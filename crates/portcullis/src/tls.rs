//! HTTPS with rustls (ring, the one crypto provider in the tree): HTTP/1.1
//! and HTTP/2 by ALPN, and the certificate and key re-read when their files
//! change, so a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are looked at.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The PEM files of a certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate being served, swapped when its files change.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// What the files looked like when last read.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(files: &TlsFiles) -> Stamp {
    let meta = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    let (cert, key) = (meta(&files.cert)?, meta(&files.key)?);
    Some((cert.0, cert.1, key.0, key.1))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair: the key must sign, and match the certificate.
fn load(files: &TlsFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {} is not PEM", files.cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("TLS certificate {} holds no certificate", files.cert.display());
    }
    // The key's contents never reach a message.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| anyhow::anyhow!("TLS key {} is not a readable PEM private key", files.key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        anyhow::anyhow!("TLS key {} does not fit certificate {}: {e}", files.key.display(), files.cert.display())
    })?;
    Ok(Arc::new(certified))
}

impl Reloading {
    /// Re-reads the files if they changed; a pair that does not load keeps
    /// the one being served (and says so).
    fn refresh(&self) {
        let now = stamp(&self.files);
        if now.is_none() || self.current.read().map(|c| c.1 == now).unwrap_or(true) {
            return;
        }
        match load(&self.files) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (key, now);
                }
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "TLS certificate changed but does not load; still serving the previous one"
            ),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

/// A TLS acceptor for `files`, and the task that keeps its certificate in
/// step with them (run it beside the server).
///
/// # Errors
/// Files that cannot be read, or a key that does not fit its certificate.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<(tokio_rustls::TlsAcceptor, impl Future<Output = ()> + use<>)> {
    let reloading = Arc::new(Reloading { current: RwLock::new((load(files)?, stamp(files))), files: files.clone() });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(reloading.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let watch = async move {
        let mut tick = tokio::time::interval(RELOAD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reloading = reloading.clone();
            // File reads off the async workers.
            let _ = tokio::task::spawn_blocking(move || reloading.refresh()).await;
        }
    };
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), watch))
}
