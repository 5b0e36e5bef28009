//! Drives a running contract server over HTTPS, trusting only its CA: tokens, NICs and VMs with
//! polling, paging, throttling, failures and deletes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use infrakit_arm_contract::{ArmOptions, ArmServer, COMPUTE_API, NETWORK_API};

const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH me@host";

/// An answer: status, headers (names lowercase) and the JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTPS connection to the server.
struct Client {
    endpoint: String,
    sender: SendRequest<Full<Bytes>>,
    token: Option<String>,
}

impl Client {
    async fn connect(server: &ArmServer) -> Client {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(server.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let endpoint = server.endpoint();
        let addr = endpoint.trim_start_matches("https://").to_string();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(connection);
        Client {
            endpoint,
            sender,
            token: None,
        }
    }

    /// Sends a request to `target`: a path with query, or an absolute URL on the server.
    async fn send(
        &mut self,
        method: Method,
        target: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let path = target.strip_prefix(&self.endpoint).unwrap_or(target);
        assert!(
            path.starts_with('/'),
            "{target} is not on {}",
            self.endpoint
        );
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.endpoint.trim_start_matches("https://"));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .sender
            .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, target: &str) -> Answer {
        self.send(Method::GET, target, None, Vec::new()).await
    }

    async fn put(&mut self, target: &str, body: Value) -> Answer {
        self.send(
            Method::PUT,
            target,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn delete(&mut self, target: &str) -> Answer {
        self.send(Method::DELETE, target, None, Vec::new()).await
    }

    async fn token(&mut self, tenant: &str, secret: &str) -> Answer {
        let form = format!(
            "client_id=infrakit-test-client&client_secret={secret}&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        self.send(
            Method::POST,
            &format!("/{tenant}/oauth2/v2.0/token"),
            Some("application/x-www-form-urlencoded"),
            form.into_bytes(),
        )
        .await
    }

    async fn login(&mut self, server: &ArmServer) {
        let tenant = server.options().tenant.clone();
        let answer = self.token(&tenant, "infrakit-test-secret").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        self.token = Some(answer.body["access_token"].as_str().unwrap().to_string());
    }

    /// Polls an Azure-AsyncOperation URL until a terminal status: the statuses seen.
    async fn poll(&mut self, url: &str) -> Vec<Answer> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let answer = self.get(url).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let done = answer.body["status"] != "InProgress";
            seen.push(answer);
            if done {
                return seen;
            }
        }
        panic!("{url} never finished");
    }
}

fn rg_path(server: &ArmServer) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/infrakit-test/providers",
        server.options().subscription
    )
}

fn nic_path(server: &ArmServer, name: &str) -> String {
    format!(
        "{}/Microsoft.Network/networkInterfaces/{name}",
        rg_path(server)
    )
}

fn vm_path(server: &ArmServer, name: &str) -> String {
    format!(
        "{}/Microsoft.Compute/virtualMachines/{name}",
        rg_path(server)
    )
}

fn nic_body(server: &ArmServer) -> Value {
    let options = server.options();
    json!({"location": "westeurope", "tags": {"infrakit.group": "workers"}, "properties": {"ipConfigurations": [
        {"name": "ipconfig1", "properties": {"subnet": {"id": options.subnets[0].id(&options.subscription)}}}]}})
}

fn vm_body(server: &ArmServer, nic: &str) -> Value {
    json!({
        "location": "westeurope",
        "tags": {"infrakit.group": "workers"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"}
            },
            "osProfile": {
                "computerName": "worker", "adminUsername": "azureuser", "customData": "I2Nsb3VkLWNvbmZpZw==",
                "linuxConfiguration": {"disablePasswordAuthentication": true, "ssh": {"publicKeys": [
                    {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}]}}
            },
            "networkProfile": {"networkInterfaces": [
                {"id": format!("/subscriptions/{}/resourceGroups/infrakit-test/providers/Microsoft.Network/networkInterfaces/{nic}", server.options().subscription),
                 "properties": {"deleteOption": "Delete"}}]}
        }
    })
}

/// Creates a NIC and a VM using it, following both operations to their end.
async fn create_vm(client: &mut Client, server: &ArmServer, name: &str) -> Vec<Answer> {
    let nic = format!("{name}-nic");
    let answer = client
        .put(
            &format!("{}?api-version={NETWORK_API}", nic_path(server, &nic)),
            nic_body(server),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let url = answer.header("azure-asyncoperation").unwrap().to_string();
    let statuses = client.poll(&url).await;
    assert_eq!(statuses.last().unwrap().body["status"], "Succeeded");
    let answer = client
        .put(
            &format!("{}?api-version={COMPUTE_API}", vm_path(server, name)),
            vm_body(server, &nic),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["properties"]["provisioningState"], "Creating");
    let url = answer.header("azure-asyncoperation").unwrap().to_string();
    client.poll(&url).await
}

#[tokio::test]
async fn tokens_and_front_door_checks() {
    let server = ArmServer::start(ArmOptions::default()).await.unwrap();
    let mut client = Client::connect(&server).await;
    let tenant = server.options().tenant.clone();

    let wrong = client.token(&tenant, "wrong").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"], "invalid_client");
    assert_eq!(wrong.body["error_codes"][0], 7000215);
    let other = client.token("other-tenant", "infrakit-test-secret").await;
    assert_eq!(other.status, 400);
    assert!(other.body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS90002: Tenant 'other-tenant' not found"));

    let list = format!("{}/Microsoft.Compute/virtualMachines", rg_path(&server));
    let anonymous = client
        .get(&format!("{list}?api-version={COMPUTE_API}"))
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], "AuthenticationFailed");
    assert!(anonymous.header("x-ms-request-id").is_some());
    assert!(anonymous.header("x-ms-correlation-request-id").is_some());

    client.token = Some("forged".into());
    let forged = client
        .get(&format!("{list}?api-version={COMPUTE_API}"))
        .await;
    assert_eq!(forged.body["error"]["code"], "InvalidAuthenticationToken");

    client.login(&server).await;
    let missing = client.get(&list).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"]["code"], "MissingApiVersionParameter");
    let wrong = client
        .get(&format!("{list}?api-version={NETWORK_API}"))
        .await;
    assert_eq!(wrong.body["error"]["code"], "InvalidApiVersionParameter");
    assert!(wrong.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(COMPUTE_API));
    let no_group = client
        .get(&format!(
            "/subscriptions/{}/resourceGroups/nope/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}",
            server.options().subscription
        ))
        .await;
    assert_eq!(no_group.status, 404);
    assert_eq!(
        no_group.body["error"]["message"],
        "Resource group 'nope' could not be found."
    );
    let no_sub = client
        .get(&format!(
            "/subscriptions/other/resourceGroups/infrakit-test/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}"
        ))
        .await;
    assert_eq!(no_sub.body["error"]["code"], "SubscriptionNotFound");
    let absent = client
        .get(&format!(
            "{}?api-version={COMPUTE_API}",
            vm_path(&server, "ghost")
        ))
        .await;
    assert_eq!(absent.status, 404);
    assert_eq!(
        absent.body["error"]["message"],
        "The Resource 'Microsoft.Compute/virtualMachines/ghost' under resource group 'infrakit-test' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    );
    assert!(absent
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    // Unknown members are refused with their path.
    let mut body = vm_body(&server, "nic");
    body["properties"]["hardwareProfile"]["x"] = json!(1);
    let refused = client
        .put(
            &format!("{}?api-version={COMPUTE_API}", vm_path(&server, "vm")),
            body,
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["code"], "InvalidRequestContent");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains(
        "Could not find member 'x' on object of type 'HardwareProfile'. Path 'properties.hardwareProfile.x'"
    ));
    let text = client
        .send(
            Method::PUT,
            &format!("{}?api-version={COMPUTE_API}", vm_path(&server, "vm")),
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(text.status, 415);

    let log = server.requests();
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].status, 401);
    assert!(log
        .iter()
        .any(|l| l.status == 404 && l.path.ends_with("/ghost")));
    server.stop();
}

#[tokio::test]
async fn vms_are_created_listed_throttled_and_deleted() {
    let options = ArmOptions {
        retry_after_secs: 3,
        ..ArmOptions::default()
    };
    let server = ArmServer::start(options).await.unwrap();
    let mut client = Client::connect(&server).await;
    client.login(&server).await;

    let statuses = create_vm(&mut client, &server, "vm-a").await;
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].body["status"], "InProgress");
    assert_eq!(statuses[0].header("retry-after"), Some("3"));
    assert_eq!(statuses[1].body["status"], "Succeeded");
    assert!(statuses[1].header("retry-after").is_none());
    for name in ["vm-b", "vm-c"] {
        let statuses = create_vm(&mut client, &server, name).await;
        assert_eq!(statuses.last().unwrap().body["status"], "Succeeded");
    }
    assert_eq!(
        server.vm_names("infrakit-test"),
        vec!["vm-a", "vm-b", "vm-c"]
    );

    let vm = client
        .get(&format!(
            "{}?api-version={COMPUTE_API}&$expand=instanceView",
            vm_path(&server, "VM-A")
        ))
        .await;
    assert_eq!(vm.status, 200);
    assert_eq!(vm.body["name"], "vm-a");
    assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        vm.body["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/running"
    );
    let nic = client
        .get(&format!(
            "{}?api-version={NETWORK_API}",
            nic_path(&server, "vm-a-nic")
        ))
        .await;
    assert_eq!(
        nic.body["properties"]["virtualMachine"]["id"],
        vm.body["id"]
    );
    assert_eq!(
        nic.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
        "10.0.1.4"
    );

    // Paging: two per page.
    let list = format!(
        "{}/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}",
        rg_path(&server)
    );
    let first = client.get(&list).await;
    assert_eq!(first.body["value"].as_array().unwrap().len(), 2);
    let next = first.body["nextLink"].as_str().unwrap().to_string();
    assert!(next.starts_with(&server.endpoint()));
    let second = client.get(&next).await;
    let names: Vec<&str> = first.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["value"].as_array().unwrap())
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["vm-a", "vm-b", "vm-c"]);
    assert!(second.body.get("nextLink").is_none());

    // Throttling: ARM requests only, with Retry-After.
    server.throttle(2, 7);
    let throttled = client.get(&list).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after"), Some("7"));
    assert_eq!(throttled.body["error"]["code"], "TooManyRequests");
    let tenant = server.options().tenant.clone();
    assert_eq!(
        client.token(&tenant, "infrakit-test-secret").await.status,
        200
    );
    assert_eq!(client.get(&list).await.status, 429);
    assert_eq!(client.get(&list).await.status, 200);

    // Delete, following the Location URL.
    let deleted = client
        .delete(&format!(
            "{}?api-version={COMPUTE_API}&forceDeletion=false",
            vm_path(&server, "vm-b")
        ))
        .await;
    assert_eq!(deleted.status, 202);
    assert_eq!(deleted.header("retry-after"), Some("3"));
    assert!(deleted.header("azure-asyncoperation").is_some());
    let location = deleted.header("location").unwrap().to_string();
    let during = client
        .get(&format!(
            "{}?api-version={COMPUTE_API}",
            vm_path(&server, "vm-b")
        ))
        .await;
    assert_eq!(during.body["properties"]["provisioningState"], "Deleting");
    let pending = client.get(&location).await;
    assert_eq!(pending.status, 202);
    assert!(pending.header("location").is_some());
    let done = client.get(&location).await;
    assert_eq!(done.status, 204);
    let gone = client
        .get(&format!(
            "{}?api-version={COMPUTE_API}",
            vm_path(&server, "vm-b")
        ))
        .await;
    assert_eq!(gone.status, 404);
    // Its NIC had deleteOption Delete.
    let nic_gone = client
        .get(&format!(
            "{}?api-version={NETWORK_API}",
            nic_path(&server, "vm-b-nic")
        ))
        .await;
    assert_eq!(nic_gone.status, 404);
    let again = client
        .delete(&format!(
            "{}?api-version={COMPUTE_API}",
            vm_path(&server, "vm-b")
        ))
        .await;
    assert_eq!(again.status, 204);
    assert_eq!(server.vm_names("infrakit-test"), vec!["vm-a", "vm-c"]);
    // The NIC of a VM cannot be deleted.
    let in_use = client
        .delete(&format!(
            "{}?api-version={NETWORK_API}",
            nic_path(&server, "vm-a-nic")
        ))
        .await;
    assert_eq!(in_use.status, 400);
    assert_eq!(in_use.body["error"]["code"], "NicInUse");

    assert!(server
        .requests()
        .iter()
        .any(|l| l.status == 429 && l.query.contains("api-version")));
}

#[tokio::test]
async fn failed_creations() {
    let server = ArmServer::start(ArmOptions {
        operation_polls: 0,
        ..ArmOptions::default()
    })
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    client.login(&server).await;
    server.fail_next_vm("AllocationFailed", "Allocation failed. Try another size.");
    let statuses = create_vm(&mut client, &server, "vm-f").await;
    assert_eq!(statuses.len(), 1);
    let failed = &statuses[0].body;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["error"]["code"], "AllocationFailed");
    let vm = client
        .get(&format!(
            "{}?api-version={COMPUTE_API}",
            vm_path(&server, "vm-f")
        ))
        .await;
    assert_eq!(vm.body["properties"]["provisioningState"], "Failed");
    let view = client
        .get(&format!(
            "{}/instanceView?api-version={COMPUTE_API}",
            vm_path(&server, "vm-f")
        ))
        .await;
    assert_eq!(
        view.body["statuses"][0]["code"],
        "ProvisioningState/failed/AllocationFailed"
    );
    // The next one succeeds.
    let statuses = create_vm(&mut client, &server, "vm-g").await;
    assert_eq!(statuses[0].body["status"], "Succeeded");
}
