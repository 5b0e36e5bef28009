//! The server's TLS: a CA made with rcgen for each server, a certificate it signs for
//! `127.0.0.1` and `localhost` (IP and DNS subject alternative names), and a rustls
//! configuration with the `ring` provider serving HTTP/1.1.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("TLS: {e}"))
}

/// A server configuration and the PEM of the CA clients must trust.
pub(crate) fn server_config() -> io::Result<(Arc<ServerConfig>, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "infrakit ARM contract CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(invalid)?)
        .map_err(invalid)?;

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(invalid)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "infrakit ARM contract server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(invalid)?;
    let cert = params.signed_by(&key, &ca).map_err(invalid)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(invalid)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), ca.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_and_a_configuration() {
        let (config, pem) = server_config().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
