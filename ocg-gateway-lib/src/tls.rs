//! The TLS client of the channels that open their own connections (IRC,
//! IMAP): rustls with the system's certificate roots, plus extra
//! authorities for a private server.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsConnector;

/// A TLS client trusting the system's roots and the PEM certificates in
/// `extra_ca` (named `key` in errors).
pub(crate) fn connector(extra_ca: Option<(&str, &Path)>) -> Result<TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra = match extra_ca {
        Some((key, path)) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{key} {}: {e}", path.display()))?,
        None => Vec::new(),
    };
    let verifier = if extra.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
    }
    .map_err(|e| format!("certificate roots: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
