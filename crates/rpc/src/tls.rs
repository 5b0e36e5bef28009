//! rustls configurations built from the PEM files named in [`crate::tcp`]'s configs.
//!
//! The `ring` provider is used explicitly, so building a configuration never depends on which
//! provider other crates in the process happen to enable.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::tcp::{ClientTlsConfig, TlsConfig};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn certs(path: &Path, what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("cannot read {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid(format!("cannot read private key {}: {e}", path.display())))
}

fn roots(path: &Path, what: &str) -> io::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, what)? {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("{what} {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// The server side: our certificate, and client certificates verified against `client_ca`.
pub(crate) fn server_config(tls: &TlsConfig) -> io::Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(ca, "client CA")?, provider)
                    .build()
                    .map_err(|e| invalid(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&tls.cert, "certificate")?, key(&tls.key)?)
        .map_err(|e| {
            invalid(format!(
                "certificate {} and key {} do not go together: {e}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: the server's CA, and our certificate when we have one.
pub(crate) fn client_config(tls: &ClientTlsConfig) -> io::Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots(&tls.ca, "CA")?);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(k)) => builder
            .with_client_auth_cert(certs(cert, "client certificate")?, key(k)?)
            .map_err(|e| {
                invalid(format!(
                    "client certificate {} and key {} do not go together: {e}",
                    cert.display(),
                    k.display()
                ))
            }),
        _ => Ok(builder.with_no_client_auth()),
    }
}
