#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, conformance and end-to-end tests against
# the real tools, the README's examples, a benchmark smoke run and the fuzz targets.
#
# Works on a fresh machine with only the Rust toolchain, Python and the Debian and PyPI
# registries: it installs what the tests need when it is missing. Each check asks for what the
# tests use (a statically linked busybox, a moto_server that runs, an etcd at /usr/bin/etcd),
# not merely for a command's name. It starts a Docker engine only when none answers, and never
# stops, restarts or reconfigures one that runs already.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/infrakit"
mkdir -p "$CACHE"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  echo "installing $*"
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

fail() { echo "test.sh: $*" >&2; exit 1; }

# A program that runs (a dangling shim or a wrong architecture's binary does not count).
runs() { "$@" >/dev/null 2>&1; }

# Whether an ELF file needs a dynamic loader (names a program interpreter).
is_dynamic() {
  runs command -v readelf || apt_install binutils
  LC_ALL=C readelf -lW "$1" 2>/dev/null | grep -q 'program interpreter'
}

# The Docker images of the tests are built FROM scratch around one busybox binary, so it must
# be statically linked; Debian's default busybox package is not.
static_busybox() {
  local b
  for b in /usr/bin/busybox /bin/busybox; do
    if [ -x "$b" ] && ! is_dynamic "$b"; then return 0; fi
  done
  return 1
}

# moto's EC2 server and the aws CLI (the AWS page's example creates volumes with it), in a
# virtual environment of our own: the system Python may refuse installs (PEP 668), and a user's
# Python is not ours to change.
ensure_python_tools() {
  if runs moto_server --help && runs aws --version; then return; fi
  local venv="$CACHE/venv"
  if ! { runs "$venv/bin/moto_server" --help && runs "$venv/bin/aws" --version; }; then
    if ! runs "$venv/bin/python" -m pip --version; then
      rm -rf "$venv"
      if ! runs python3 -m venv "$venv"; then
        apt_install python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv" || /usr/bin/python3 -m venv "$venv"
      fi
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]' awscli
  fi
  export PATH="$venv/bin:$PATH"
  runs moto_server --help || fail "moto_server does not run from $venv"
  runs aws --version || fail "aws does not run from $venv"
}

ensure_tools() {
  # protoc builds the etcd client (the `etcd` feature); etcd runs the managers' election tests.
  runs protoc --version || apt_install protobuf-compiler
  runs /usr/bin/etcd --version || apt_install etcd-server
  # The Terraform plugin's tests run the real terraform binary; it comes with the machine.
  runs terraform version || fail "terraform does not run: the Terraform plugin's tests need it on PATH"
  static_busybox || apt_install busybox-static
  static_busybox || fail "no statically linked busybox at /usr/bin/busybox after installing busybox-static"
  runs dockerd --version || apt_install docker.io
  # Vagrant with its (built-in) docker provider, which drives the docker command.
  runs vagrant --version || apt_install vagrant
  runs docker --version || apt_install docker.io
  # ZooKeeper ensembles for the zookeeper flavor's tests, run by the process plugin with java.
  { [ -x /usr/share/zookeeper/bin/zkServer.sh ] && runs java -version && [ -f /usr/share/java/slf4j-simple.jar ]; } \
    || apt_install zookeeper libslf4j-java
  # Network namespaces and veths for the private Docker engines of the Swarm and engine tests.
  runs ip netns list || apt_install iproute2
  { runs nsenter --version && runs unshare --version; } || apt_install util-linux
  # Headless Chromium and its WebDriver for the dashboard's browser test.
  { runs /usr/bin/chromium --version && runs /usr/bin/chromedriver --version; } \
    || apt_install chromium chromium-driver
  ensure_python_tools
}

# The tests that are not about the engine itself (those run engines of their own) use one that
# answers at DOCKER_HOST or the default socket. One is started only when none answers, and
# stopped again when the suite ends: the machine is left as it was found.
ensure_docker() {
  if runs docker version --format '{{.Server.Version}}'; then
    return
  fi
  echo "starting dockerd for the suite (log: $CACHE/dockerd.log)"
  as_root sh -c "nohup dockerd >'$CACHE/dockerd.log' 2>&1 & echo \$! >'$CACHE/dockerd.pid'"
  trap stop_docker EXIT
  for _ in $(seq 1 120); do
    if runs docker version --format '{{.Server.Version}}'; then
      return
    fi
    sleep 0.5
  done
  tail -20 "$CACHE/dockerd.log" >&2 || true
  fail "dockerd did not come up; see $CACHE/dockerd.log"
}

stop_docker() {
  local pid
  pid=$(cat "$CACHE/dockerd.pid" 2>/dev/null) || return 0
  echo "stopping the dockerd this run started (pid $pid)"
  as_root kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do
    as_root kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$CACHE/dockerd.pid"
}

started=$(date +%s)
# Each step's header says how long the run has taken so far.
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }
step services
ensure_tools
ensure_docker

step default build needs no system package
scripts/check-default-build.sh

step formatting
cargo fmt --all -- --check

step no module cycles in any crate
for src in crates/*/src; do python3 scripts/modcycles.py "$src" >/dev/null || {
    python3 scripts/modcycles.py "$src"
    exit 1
}; done

# The etcd store is a feature of the CLI (its client needs protoc); the tests cover it.
FEATURES=(--features infrakit/etcd)

step lints
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings

step tests
cargo test --workspace --locked --no-fail-fast "${FEATURES[@]}"

step benchmark smoke
cargo run -p infrakit-bench --locked -- --quick

step fuzzing
scripts/fuzz.sh "${INFRAKIT_FUZZ_SECONDS:-60}"

echo "== done in $(( $(date +%s) - started )) s"
