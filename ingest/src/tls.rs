//! The TLS server configuration for `STARTTLS`, loaded once at start-up from PEM files.
//!
//! Loading is where a mistake shows: an unreadable file, a file without a certificate or key, or a
//! key that does not match the certificate stops the ingest with the variable's name, instead of
//! surfacing later as handshake failures that look like the clients' fault. The crypto provider is
//! named (ring) rather than taken from the process default, so the result does not depend on which
//! rustls features other crates in the build happen to enable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("MAILDROP_TLS_CERT={path}: cannot read a PEM certificate chain: {source}")]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("MAILDROP_TLS_CERT={0}: no certificate in the file")]
    NoCert(PathBuf),
    #[error("MAILDROP_TLS_KEY={path}: cannot read a PEM private key: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "MAILDROP_TLS_CERT={cert} and MAILDROP_TLS_KEY={key} do not make a usable pair: {source}"
    )]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Builds the acceptor from a PEM certificate chain (leaf first) and a PEM private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let config_error = |source| TlsError::Config {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(config_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_variable() {
        let err = acceptor(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("MAILDROP_TLS_CERT=/nonexistent/cert.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_pem_sections_is_refused() {
        let dir = std::env::temp_dir().join(format!("maildrop-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = acceptor(&cert, &cert).err().unwrap();
        assert!(matches!(err, TlsError::NoCert(_)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
