#!/usr/bin/env bash
# Idempotent machine setup for Tack on Debian 12: installs the missing Debian
# packages listed in scripts/debian-packages.txt and reserves hugepages when it can.
# Works (with a note) when hugepages cannot be reserved: every test also runs with
# --no-huge.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs packages and reserves hugepages)" >&2
    exit 1
  fi
}

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/debian-packages.txt")
missing=()
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts some daemons on install; the lab starts its own instances.
  for svc in nginx haproxy bird prometheus keepalived; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# Python packages from PyPI the tests use, in a virtual environment of their
# own (Debian's python3 keeps its packages to apt): schemathesis for the
# property-based run against the management API's OpenAPI document.
pyenv=/opt/tack-test/venv
pypi_packages=(schemathesis==4.32.5)
if ! "$pyenv/bin/python" -m pip show -q schemathesis >/dev/null 2>&1; then
  need_root
  echo "setup.sh: installing ${pypi_packages[*]} into $pyenv"
  /usr/bin/python3 -m venv "$pyenv"
  "$pyenv/bin/python" -m pip install -q --disable-pip-version-check "${pypi_packages[@]}"
fi

# Rust toolchain: the machine has one (rustup); make sure the components we use are there.
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true

# Hugepages: 512 x 2 MiB when possible. Optional: tests run with --no-huge.
if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
  cur=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$cur" -lt 512 ]; then
    echo 512 > /proc/sys/vm/nr_hugepages 2>/dev/null || true
  fi
  mountpoint -q /dev/hugepages 2>/dev/null || { mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true; }
  echo "setup.sh: hugepages reserved: $(cat /proc/sys/vm/nr_hugepages) x 2 MiB"
else
  echo "setup.sh: hugepages not reserved (not root or not writable); tests use --no-huge"
fi
