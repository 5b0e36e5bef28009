//! Configuration: where ARM and the identity provider are, which subscription, which
//! credential, and the HTTPS client both are reached with.
//!
//! The endpoints default to Azure's public cloud; a sovereign cloud (or a test server) is named
//! with [`AzureConfig::endpoint`] and [`AzureConfig::authority_host`]. Credentials come from
//! `azure_identity`: a service principal's client secret, workload identity (a federated token
//! file, as on AKS), a managed identity, or the Azure CLI's login; [`CredentialKind::Auto`]
//! picks the first the environment provides, in that order. HTTPS runs on rustls with the
//! platform's roots, plus the certificates of [`AzureConfig::ca_file`] (a TLS-inspecting proxy,
//! or a test server).

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::Url;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, Pipeline, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

use crate::arm::{Arm, Polling};

/// ARM in Azure's public cloud.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";
/// Microsoft Entra ID in Azure's public cloud.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Retries of a throttled or transiently failed request, unless told otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 8;

/// Which credential authenticates the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialKind {
    /// The first the environment provides: a client secret, a federated token file, a managed
    /// identity endpoint, the Azure CLI, else the instance metadata service's managed identity.
    #[default]
    Auto,
    /// A service principal's secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// Workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`).
    WorkloadIdentity,
    /// The managed identity of the machine or service the plugin runs on (`AZURE_CLIENT_ID`
    /// names a user-assigned one).
    ManagedIdentity,
    /// The Azure CLI's login (`az login`).
    AzureCli,
}

impl std::str::FromStr for CredentialKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => CredentialKind::Auto,
            "client-secret" => CredentialKind::ClientSecret,
            "workload-identity" => CredentialKind::WorkloadIdentity,
            "managed-identity" => CredentialKind::ManagedIdentity,
            "azure-cli" => CredentialKind::AzureCli,
            other => {
                return Err(format!(
                    "unknown credential '{other}' (auto, client-secret, workload-identity, \
                     managed-identity, azure-cli)"
                ))
            }
        })
    }
}

/// Where and as whom the plugin talks to Azure.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// ARM's base URL.
    pub endpoint: String,
    /// The identity provider's base URL.
    pub authority_host: String,
    /// The subscription the instances are in.
    pub subscription: String,
    /// Directory (tenant) ID.
    pub tenant_id: Option<String>,
    /// Application (client) ID, or a user-assigned managed identity's client ID.
    pub client_id: Option<String>,
    /// A service principal's secret.
    pub client_secret: Option<String>,
    /// Which credential to use.
    pub credential: CredentialKind,
    /// PEM certificates to trust besides the platform's.
    pub ca_file: Option<PathBuf>,
    /// Retries of a throttled or transiently failed request.
    pub max_retries: u32,
    /// How long-running operations are polled.
    pub polling: Polling,
}

impl AzureConfig {
    /// Public cloud, subscription `subscription`, credentials from the environment.
    pub fn new(subscription: &str) -> Self {
        AzureConfig {
            endpoint: PUBLIC_ENDPOINT.to_string(),
            authority_host: PUBLIC_AUTHORITY.to_string(),
            subscription: subscription.to_string(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            credential: CredentialKind::Auto,
            ca_file: None,
            max_retries: DEFAULT_MAX_RETRIES,
            polling: Polling::default(),
        }
    }

    /// The scope of ARM tokens: `<endpoint>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.endpoint.trim_end_matches('/'))
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The CA file cannot be read.
    #[error("reading {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `azure_identity` refused the credential's settings, or the HTTPS client cannot start.
    #[error("{0}")]
    Azure(String),
}

/// The ARM client `config` describes: its HTTPS client, credential and pipeline.
pub fn connect(config: &AzureConfig) -> Result<Arm, ConfigError> {
    if config.subscription.trim().is_empty() {
        return Err(ConfigError::Invalid(
            "no subscription: set AZURE_SUBSCRIPTION_ID or --subscription".into(),
        ));
    }
    let endpoint = Url::parse(&config.endpoint)
        .map_err(|e| ConfigError::Invalid(format!("endpoint {:?}: {e}", config.endpoint)))?;
    let transport = Transport::new(Arc::new(http_client(config)?));
    let credential = credential(config, &transport)?;
    let options = ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(500),
            max_retries: config.max_retries,
            max_total_elapsed: azure_core::time::Duration::seconds(300),
            max_delay: azure_core::time::Duration::seconds(60),
        }),
        transport: Some(transport),
        ..ClientOptions::default()
    };
    let auth = Arc::new(BearerTokenAuthorizationPolicy::new(
        credential,
        [config.scope()],
    ));
    let pipeline = Pipeline::new(
        Some(env!("CARGO_PKG_NAME")),
        Some(env!("CARGO_PKG_VERSION")),
        options,
        Vec::new(),
        vec![auth],
        None,
    );
    Ok(Arm::new(
        pipeline,
        endpoint,
        &config.subscription,
        config.polling,
    ))
}

/// The HTTPS client: rustls on ring, the platform's roots and the CA file's.
fn http_client(config: &AzureConfig) -> Result<reqwest::Client, ConfigError> {
    // Several callers may get here first; the provider is the same for all.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .read_timeout(std::time::Duration::from_secs(120));
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| ConfigError::CaFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ConfigError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| ConfigError::Azure(format!("starting the HTTPS client: {e}")))
}

/// The credential `config` asks for.
fn credential(
    config: &AzureConfig,
    transport: &Transport,
) -> Result<Arc<dyn TokenCredential>, ConfigError> {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = config.authority_host.clone();
    let client_options = ClientOptions {
        transport: Some(transport.clone()),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..ClientOptions::default()
    };
    let kind = match config.credential {
        CredentialKind::Auto => auto(config),
        k => k,
    };
    let azure = |e: azure_core::Error| ConfigError::Azure(format!("{kind:?} credential: {e}"));
    let required = |value: &Option<String>, name: &str| {
        value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "the {kind:?} credential needs {name} (environment or flag)"
            ))
        })
    };
    Ok(match kind {
        CredentialKind::ClientSecret => ClientSecretCredential::new(
            &required(&config.tenant_id, "AZURE_TENANT_ID")?,
            required(&config.client_id, "AZURE_CLIENT_ID")?,
            Secret::new(required(&config.client_secret, "AZURE_CLIENT_SECRET")?),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(azure)?,
        CredentialKind::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                client_id: config.client_id.clone(),
                tenant_id: config.tenant_id.clone(),
                token_file_path: None,
            }))
            .map_err(azure)?
        }
        CredentialKind::ManagedIdentity => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))
            .map_err(azure)?
        }
        CredentialKind::AzureCli | CredentialKind::Auto => {
            AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: config.tenant_id.clone(),
                ..AzureCliCredentialOptions::default()
            }))
            .map_err(azure)?
        }
    })
}

/// What [`CredentialKind::Auto`] picks with this configuration and environment.
fn auto(config: &AzureConfig) -> CredentialKind {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if config
        .client_secret
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        CredentialKind::ClientSecret
    } else if set("AZURE_FEDERATED_TOKEN_FILE") {
        CredentialKind::WorkloadIdentity
    } else if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") {
        CredentialKind::ManagedIdentity
    } else if on_path("az") {
        CredentialKind::AzureCli
    } else {
        CredentialKind::ManagedIdentity
    }
}

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_scope_is_the_endpoints() {
        let mut c = AzureConfig::new("s");
        assert_eq!(c.scope(), "https://management.azure.com/.default");
        c.endpoint = "https://management.usgovcloudapi.net/".into();
        assert_eq!(c.scope(), "https://management.usgovcloudapi.net/.default");
    }

    #[test]
    fn a_secret_in_the_configuration_picks_the_client_secret_credential() {
        let mut c = AzureConfig::new("s");
        c.client_secret = Some("x".into());
        assert_eq!(auto(&c), CredentialKind::ClientSecret);
        assert_eq!("azure-cli".parse(), Ok(CredentialKind::AzureCli));
        assert!("kerberos".parse::<CredentialKind>().is_err());
    }

    #[test]
    fn a_client_secret_credential_needs_its_three_settings() {
        let mut c = AzureConfig::new("s");
        c.credential = CredentialKind::ClientSecret;
        c.tenant_id = Some("t".into());
        let e = connect(&c).unwrap_err().to_string();
        assert!(e.contains("AZURE_CLIENT_ID"), "{e}");
    }
}
