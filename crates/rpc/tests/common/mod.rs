//! Helpers shared by the test binaries: a plugin that records the calls reaching it, and a test
//! PKI made with rcgen.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use infrakit_spi::group::{PlanPreview, RolloutAction};
use infrakit_spi::{
    Allocation, Description, DestroyContext, Flavor, Group, GroupDescription, GroupSpec, Health,
    Index, Instance, Result, Spec, Tags,
};

/// Records every call that reaches the plugin side; tests of bad input expect none.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn note(&self, call: &str) {
        self.calls.lock().unwrap().push(call.to_string());
    }

    /// The calls seen since the last `take`.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Instance for Recorder {
    async fn validate(&self, _: &Value) -> Result<()> {
        self.note("Instance.Validate");
        Ok(())
    }
    async fn provision(&self, _: Spec) -> Result<String> {
        self.note("Instance.Provision");
        Ok("i-1".into())
    }
    async fn label(&self, _: &str, _: &Tags) -> Result<()> {
        self.note("Instance.Label");
        Ok(())
    }
    async fn destroy(&self, _: &str, _: &DestroyContext) -> Result<()> {
        self.note("Instance.Destroy");
        Ok(())
    }
    async fn describe_instances(&self, _: &Tags, _: bool) -> Result<Vec<Description>> {
        self.note("Instance.DescribeInstances");
        Ok(vec![])
    }
}

#[async_trait]
impl Flavor for Recorder {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<()> {
        self.note("Flavor.Validate");
        Ok(())
    }
    async fn prepare(&self, _: &Value, spec: Spec, _: &Allocation, _: &Index) -> Result<Spec> {
        self.note("Flavor.Prepare");
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health> {
        self.note("Flavor.Healthy");
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<()> {
        self.note("Flavor.Drain");
        Ok(())
    }
}

#[async_trait]
impl Group for Recorder {
    async fn commit_group(&self, _: GroupSpec, _: bool) -> Result<String> {
        self.note("Group.CommitGroup");
        Ok("ok".into())
    }
    async fn free_group(&self, _: &str) -> Result<()> {
        self.note("Group.FreeGroup");
        Ok(())
    }
    async fn describe_group(&self, _: &str) -> Result<GroupDescription> {
        self.note("Group.DescribeGroup");
        Ok(GroupDescription::default())
    }
    async fn destroy_group(&self, _: &str) -> Result<()> {
        self.note("Group.DestroyGroup");
        Ok(())
    }
    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
        self.note("Group.InspectGroups");
        Ok(vec![])
    }
    async fn destroy_instances(&self, _: &str, _: &[String]) -> Result<()> {
        self.note("Group.DestroyInstances");
        Ok(())
    }
    async fn size(&self, _: &str) -> Result<usize> {
        self.note("Group.Size");
        Ok(0)
    }
    async fn set_size(&self, _: &str, _: usize) -> Result<()> {
        self.note("Group.SetSize");
        Ok(())
    }
    async fn plan_group(&self, _: GroupSpec) -> Result<PlanPreview> {
        self.note("Group.PlanGroup");
        Ok(PlanPreview {
            details: String::new(),
            steps: vec![],
            min_healthy: 0,
            max_instances: 0,
        })
    }
    async fn rollout(&self, _: &str, _: RolloutAction) -> Result<()> {
        self.note("Group.Rollout");
        Ok(())
    }
}

/// Certificates and keys for TLS tests, as PEM files in a directory.
pub struct Pki {
    /// The CA that signs the server's and the good clients' certificates.
    pub ca: PathBuf,
    /// The server's certificate (for 127.0.0.1 and localhost) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A valid client certificate and key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from the right CA that expired in 2021.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// A CA nobody trusts, and a client certificate it signed.
    pub other_ca: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

impl Pki {
    /// Generates everything into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>,
                    names: Vec<String>,
                    usage: ExtendedKeyUsagePurpose,
                    expired: bool| {
            let mut params = CertificateParams::new(names).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "infrakit test");
            params.extended_key_usages = vec![usage];
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let good = ca("infrakit test CA");
        let other = ca("somebody else's CA");
        let (server_cert, server_key) = leaf(
            &good,
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        );
        let (client_cert, client_key) =
            leaf(&good, vec![], ExtendedKeyUsagePurpose::ClientAuth, false);
        let (expired_cert, expired_key) =
            leaf(&good, vec![], ExtendedKeyUsagePurpose::ClientAuth, true);
        let (stranger_cert, stranger_key) =
            leaf(&other, vec![], ExtendedKeyUsagePurpose::ClientAuth, false);
        Pki {
            ca: write("ca.pem", good.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server-key.pem", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client-key.pem", client_key),
            expired_cert: write("expired.pem", expired_cert),
            expired_key: write("expired-key.pem", expired_key),
            other_ca: write("other-ca.pem", other.pem()),
            stranger_cert: write("stranger.pem", stranger_cert),
            stranger_key: write("stranger-key.pem", stranger_key),
        }
    }
}

/// Reads from `stream` until the peer closes it (or `within` passes, which fails the test):
/// everything received, as text.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: std::time::Duration,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("the server did not close the connection within {within:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP response head from `stream` (up to the blank line), within `within`.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: std::time::Duration,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => out.push(byte[0]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("no response within {within:?}"));
    String::from_utf8_lossy(&out).into_owned()
}
