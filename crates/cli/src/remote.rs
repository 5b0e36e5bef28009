//! Reaching a group plugin or manager over TCP instead of its local socket (`--remote`), and the
//! manager's own TCP listener (`--listen`). TLS or a bearer token; plaintext only when asked for
//! by name (see `docs/security.md`).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use infrakit_rpc::tcp::{ClientTlsConfig, TcpClientConfig, TcpListenerConfig, TlsConfig};
use infrakit_rpc::Client;
use infrakit_spi::secret::Secret;

use crate::cli::{ListenArgs, RemoteArgs};

static REMOTE: OnceLock<RemoteArgs> = OnceLock::new();

/// Keeps the command line's remote options for the commands that talk to a group plugin.
pub fn set(args: RemoteArgs) {
    let _ = REMOTE.set(args);
}

/// A token from a file (trailing whitespace removed), never from the command line, where `ps`
/// would show it.
fn read_token(file: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the token file {}", file.display()))?;
    let token = text.trim_end();
    if token.is_empty() {
        bail!("the token file {} is empty", file.display());
    }
    Ok(Secret::new(token))
}

/// The client configuration `--remote` asks for, if it does.
pub fn client_config(args: &RemoteArgs) -> Result<Option<TcpClientConfig>> {
    let Some(addr) = &args.remote else {
        return Ok(None);
    };
    let mut config = match &args.tls_ca {
        Some(ca) => TcpClientConfig::tls(
            addr.clone(),
            ClientTlsConfig {
                ca: ca.clone(),
                cert: args.tls_cert.clone(),
                key: args.tls_key.clone(),
                server_name: None,
            },
        ),
        None => TcpClientConfig::plaintext(addr.clone()),
    }
    .insecure_plaintext(args.insecure_plaintext);
    if let Some(file) = &args.token_file {
        config = config.with_token(read_token(file)?);
    }
    if let Err(e) = config.validate() {
        bail!("--remote {addr}: {e} (give --tls-ca, or --insecure-plaintext for a plaintext listener)");
    }
    Ok(Some(config))
}

/// A client of plugin `name`: over TCP when `--remote` was given, else `None`.
pub fn client(name: &str) -> Result<Option<Client>> {
    let Some(args) = REMOTE.get() else {
        return Ok(None);
    };
    match client_config(args)? {
        Some(config) => {
            Ok(Some(Client::tcp(name, &config).with_context(|| {
                format!("connecting to {}", config.addr)
            })?))
        }
        None => Ok(None),
    }
}

/// The TCP listener `--listen` asks for, if it does.
pub fn listener(args: &ListenArgs) -> Result<Option<TcpListenerConfig>> {
    let Some(addr) = &args.listen else {
        return Ok(None);
    };
    let mut config = match (&args.listen_tls_cert, &args.listen_tls_key) {
        (Some(cert), Some(key)) => TcpListenerConfig::tls(
            addr.clone(),
            TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.listen_client_ca.clone(),
            },
        ),
        (None, None) => TcpListenerConfig::plaintext(addr.clone()),
        _ => bail!("--listen-tls-cert and --listen-tls-key go together"),
    }
    .insecure_plaintext(args.listen_insecure_plaintext);
    if let Some(file) = &args.listen_token_file {
        config = config.with_token(read_token(file)?);
    }
    if let Err(e) = config.validate() {
        bail!("--listen {addr}: {e}");
    }
    Ok(Some(config))
}

/// The flags that reproduce `args` for a background `infrakit manager run`.
pub fn listen_flags(args: &ListenArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = |flag: &str, p: &Option<std::path::PathBuf>| {
        if let Some(p) = p {
            out.push(flag.to_string());
            out.push(
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string(),
            );
        }
    };
    path("--listen-tls-cert", &args.listen_tls_cert);
    path("--listen-tls-key", &args.listen_tls_key);
    path("--listen-client-ca", &args.listen_client_ca);
    path("--listen-token-file", &args.listen_token_file);
    if let Some(addr) = &args.listen {
        out.push("--listen".into());
        out.push(addr.clone());
    }
    if args.listen_insecure_plaintext {
        out.push("--listen-insecure-plaintext".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_needs_to_be_asked_for_by_name() {
        let mut args = RemoteArgs {
            remote: Some("127.0.0.1:1".into()),
            ..RemoteArgs::default()
        };
        let e = client_config(&args).unwrap_err().to_string();
        assert!(e.contains("--insecure-plaintext"), "{e}");
        args.insecure_plaintext = true;
        assert!(client_config(&args).unwrap().is_some());
        assert!(client_config(&RemoteArgs::default()).unwrap().is_none());
    }

    #[test]
    fn a_listener_without_tls_or_with_half_of_it_is_refused() {
        let mut args = ListenArgs {
            listen: Some("127.0.0.1:0".into()),
            ..ListenArgs::default()
        };
        assert!(listener(&args).is_err());
        args.listen_tls_cert = Some("cert.pem".into());
        assert!(listener(&args)
            .unwrap_err()
            .to_string()
            .contains("go together"));
        args.listen_tls_cert = None;
        args.listen_insecure_plaintext = true;
        assert!(listener(&args).unwrap().is_some());
        let flags = listen_flags(&args);
        assert!(flags.contains(&"--listen-insecure-plaintext".to_string()));
    }
}
