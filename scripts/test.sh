#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, conformance and end-to-end tests.
# Works on a fresh machine with the Rust toolchain: it installs and starts what the tests need
# when it is missing (protoc and etcd for the managers, a Docker engine and busybox for the
# Docker plugin).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_docker() {
  command -v busybox >/dev/null 2>&1 || apt_install busybox-static
  if docker info >/dev/null 2>&1; then
    return
  fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  echo "starting dockerd (log: /tmp/infrakit-dockerd.log)"
  as_root sh -c 'nohup dockerd >/tmp/infrakit-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
      return
    fi
    sleep 1
  done
  echo "dockerd did not come up; see /tmp/infrakit-dockerd.log" >&2
  tail -20 /tmp/infrakit-dockerd.log >&2 || true
  exit 1
}

ensure_tools() {
  # protoc builds the etcd client; etcd runs the managers' election tests.
  command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server
  # The Terraform plugin's tests run the real terraform binary; it comes with the machine.
  if ! command -v terraform >/dev/null 2>&1; then
    echo "terraform is not installed: the Terraform plugin's tests need it on PATH" >&2
    exit 1
  fi
  # Vagrant with its docker provider runs the Vagrant plugin's tests.
  command -v vagrant >/dev/null 2>&1 || apt_install vagrant
  # ZooKeeper ensembles for the zookeeper flavor's tests (run by the process plugin).
  [ -e /usr/share/zookeeper/bin/zkServer.sh ] || apt_install zookeeper
  # Network namespaces and veths for the Swarm flavor's engines.
  command -v ip >/dev/null 2>&1 || apt_install iproute2
  # Headless Chromium and its WebDriver for the dashboard's browser test.
  { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || apt_install chromium chromium-driver
  # moto's EC2 API server for the AWS plugin's tests (started by the tests themselves).
  command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'
}

echo "== services"
ensure_tools
ensure_docker

echo "== formatting"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked --no-fail-fast

echo "== benchmark smoke"
cargo run -p infrakit-bench --locked -- --quick

echo "== fuzzing"
scripts/fuzz.sh "${INFRAKIT_FUZZ_SECONDS:-60}"
