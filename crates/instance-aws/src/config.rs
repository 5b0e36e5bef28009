//! Reaching EC2: region, credentials and endpoint from the standard AWS configuration chain,
//! HTTPS on rustls, retries and timeouts.
//!
//! [`load`] follows the chain of the AWS SDKs and CLI: the environment (`AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, web identity tokens), the shared `config` and
//! `credentials` files (including `credential_process` and assumed roles), then the container
//! and instance roles (ECS, IMDS). Explicit settings ([`AwsConfig`]) win over the chain.
//!
//! Throttling, transient and 5xx errors are retried in the SDK's standard mode with exponential
//! back-off and jitter, [`DEFAULT_MAX_ATTEMPTS`] attempts in all by default.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Attempts per request (the first one and the retries) unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Longest wait for a connection to EC2.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one attempt of a request.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings that override the configuration chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// Region, e.g. `us-east-1`; `None` takes it from the chain.
    pub region: Option<String>,
    /// Named profile of the shared config files; `None` takes `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Endpoint of an EC2-compatible API (`http://127.0.0.1:5000`); `None` takes
    /// `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL` or the region's EC2 endpoint.
    pub endpoint_url: Option<String>,
    /// Attempts per request, retries included.
    pub max_attempts: u32,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            profile: None,
            endpoint_url: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// The HTTPS client: hyper with rustls on ring, trusting the system's root certificates.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Standard-mode retries, `max_attempts` attempts in all (at least one).
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(max_attempts.max(1))
}

/// Connect and per-attempt timeouts.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// Loads the configuration chain with `overrides` applied.
pub async fn load(overrides: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(retry_config(overrides.max_attempts))
        .timeout_config(timeout_config());
    if let Some(region) = &overrides.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &overrides.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An EC2 client for `sdk`.
pub fn client(sdk: &SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(sdk)
}
