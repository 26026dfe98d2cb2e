#!/usr/bin/env bash
# Builds the Debian package of Tack from this workspace:
#
#   scripts/package.sh [--profile release|debug] [--out DIR] [--bin-dir DIR]
#
# It holds tack, tackctl and tack-proxy (/usr/bin), the systemd units
# tack@.service and tack-proxy@.service (/lib/systemd/system), README.md and
# docs/*.md with the copyright file (/usr/share/doc/tack), manual pages made
# from the binaries' --help (help2man; /usr/share/man/man1), the profiles of
# configs/ as examples (/usr/share/tack/examples), keepalived's notify FIFO
# reader for a cluster's elected scheduler (/usr/share/tack/vrrp-notify.sh)
# and an empty /etc/tack for the administrator's profiles: the package ships
# no file in /etc, so an install, upgrade or purge never touches a profile.
#
#   --profile  cargo profile of the binaries (default release); they are built
#              with `cargo build` unless --bin-dir is given
#   --bin-dir  take the three binaries from DIR instead of building them (the
#              package test passes the ones its `cargo test` run built)
#   --out      directory for the .deb (default target/debian)
#
# Depends is computed by dpkg-shlibdeps (dpkg-dev) from the binaries' shared
# libraries — libc6 and DPDK's librte-* packages, with the minimum versions
# their symbols files give — plus the two DPDK plugins every profile needs
# (librte-mempool-ring, librte-net-tap), and `dpdk`, which recommends the NIC
# drivers DPDK loads at run time and brings dpdk-devbind.py and
# dpdk-hugepages.py. The version is the workspace's
# (Cargo.toml, [workspace.package]). Binaries are stripped as Debian strips
# them (no symbols, no debugging information: backtraces and perf name no
# function; profile a build tree's binary). `lintian` finds no error in the
# package (one override: unsafe-libyaml, a Rust translation of libyaml, is
# not an embedded copy of the C library). The last line printed is the .deb's
# path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() { # usage EXIT_CODE: the header above, to stdout for --help
  if [ "$1" -eq 0 ]; then exec 3>&1; else exec 3>&2; fi
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&3
  exit "$1"
}

profile=release
out="$root/target/debian"
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs release or debug}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "package.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
case "$profile" in
  release|debug) ;;
  *) echo "package.sh: --profile is release or debug, not $profile" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg-shlibdeps strip help2man; do
  command -v "$tool" >/dev/null || {
    echo "package.sh: $tool is missing: run ./scripts/setup.sh (dpkg-dev, binutils, help2man)" >&2
    exit 1
  }
done

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
arch=$(dpkg --print-architecture)
bins=(tack tackctl tack-proxy)

if [ -z "$bin_dir" ]; then
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  if [ "$profile" = release ]; then
    cargo build --release -p tack-control -p tack-proxy --bins >&2
    bin_dir="$target_dir/release"
  else
    cargo build -p tack-control -p tack-proxy --bins >&2
    bin_dir="$target_dir/debug"
  fi
fi
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || {
    echo "package.sh: $bin_dir/$b is missing (cargo build -p tack-control -p tack-proxy)" >&2
    exit 1
  }
done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
maintainer="Tack maintainers <tack@example.invalid>"

work=$(mktemp -d "${TMPDIR:-/tmp}/tack-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkg="$work/tack_${version}_${arch}"
umask 022

install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/doc/tack" "$pkg/usr/share/tack/examples" "$pkg/etc/tack"
for b in "${bins[@]}"; do
  install -m 0755 "$bin_dir/$b" "$pkg/usr/bin/$b"
  # As dh_strip does: no symbol table, no debugging information.
  strip --remove-section=.comment --remove-section=.note "$pkg/usr/bin/$b"
done
install -m 0644 packaging/systemd/tack@.service packaging/systemd/tack-proxy@.service \
  "$pkg/lib/systemd/system/"
install -m 0644 README.md docs/*.md "$pkg/usr/share/doc/tack/"
install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/tack/copyright"
install -m 0644 configs/*.yaml "$pkg/usr/share/tack/examples/"
# keepalived's notify FIFO reader for a cluster's elected scheduler (docs/cluster.md).
install -m 0755 scripts/lab/vrrp-notify.sh "$pkg/usr/share/tack/vrrp-notify.sh"
install -D -m 0644 packaging/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/tack"
# Manual pages from the binaries' --help (help2man), with each subcommand's
# --help as a section of its own; `verbatim` keeps the description (the text
# before Usage:) as --help lays it out, for a hand-aligned command list.
roff_text() { sed -e 's/\\/\\e/g' -e "s/^[.']/\\\\\&&/"; }
manpage() { # manpage NAME SUMMARY verbatim|parsed [SUBCOMMAND...]
  local name=$1 summary=$2 layout=$3 sub
  shift 3
  {
    if [ "$layout" = verbatim ]; then
      printf '[=DESCRIPTION]\n.nf\n'
      "$bin_dir/$name" --help | sed '/^Usage:/,$d' | roff_text
      printf '.fi\n\n'
    fi
    for sub in "$@"; do
      printf '[%s %s]\n.nf\n' "${name^^}" "${sub^^}"
      "$bin_dir/$name" "$sub" --help | roff_text
      printf '.fi\n\n'
    done
    printf '[SEE ALSO]\n/usr/share/doc/tack/README.md, operations.md, profiles.md and proxy.md there;\n'
    printf 'the example profiles in /usr/share/tack/examples.\n'
  } > "$work/$name.h2m"
  help2man --no-info --version-string="$version" --name="$summary" \
    --include="$work/$name.h2m" "$bin_dir/$name" | gzip -9n > "$pkg/usr/share/man/man1/$name.1.gz"
  chmod 0644 "$pkg/usr/share/man/man1/$name.1.gz"
}
install -d "$pkg/usr/share/man/man1"
manpage tack "DPDK load-balancing appliance" parsed run check
manpage tackctl "administer a running Tack appliance" verbatim
manpage tack-proxy "Tack's L7 load-balancing server" parsed

# A native package's changelog (Debian policy 12.7), naming the commit built.
changelog_date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'tack (%s) unstable; urgency=medium\n\n  * Built by scripts/package.sh from commit %s of the Tack workspace.\n\n -- %s  %s\n' \
  "$version" "$commit" "$maintainer" "$changelog_date" | gzip -9n > "$pkg/usr/share/doc/tack/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/tack/changelog.gz"

# Depends from the binaries' NEEDED libraries (dpkg-shlibdeps reads a
# debian/control, which a package built outside a source tree lacks).
mkdir -p "$work/src/debian"
printf 'Source: tack\n\nPackage: tack\nArchitecture: any\n' > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O --warnings=1 \
  "${bins[@]/#/-e$pkg/usr/bin/}" | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# DPDK's drivers are plugins EAL loads at run time, not linked: the mempool
# handler every packet pool uses and net_tap (the exception path) are needed
# by every profile; the NIC drivers come with `dpdk`'s Recommends.
abi=$(printf '%s\n' "$shlibs" | sed -n 's/.*librte-eal\([0-9][0-9]*\) .*/\1/p')
[ -n "$abi" ] || { echo "package.sh: the binaries do not link DPDK's EAL? ($shlibs)" >&2; exit 1; }
# The same minimum version as EAL's.
eal_min=$(printf '%s\n' "$shlibs" | sed -n 's/.*librte-eal[0-9]* (>= \([^)]*\)).*/\1/p')
plugins="librte-mempool-ring$abi${eal_min:+ (>= $eal_min)}, librte-net-tap$abi${eal_min:+ (>= $eal_min)}"

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<EOF
Package: tack
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, $plugins, dpdk
Section: net
Priority: optional
Description: DPDK load-balancing appliance and L7 proxy
 Tack is a load-balancing appliance for servers whose NICs are bound to
 DPDK: poll-mode workers pinned one per NIC queue forward with NAT, full NAT,
 direct server return or IP-in-IP, with connection and sticky (persistence)
 tables per core, configured by YAML profiles.
 .
 This package holds the appliance (tack), its admin CLI (tackctl), the L7
 load-balancing server (tack-proxy), the systemd units tack@.service and
 tack-proxy@.service (one instance per profile in /etc/tack), example
 profiles in /usr/share/tack/examples and the documentation.
EOF
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"

# xz for a release; a debug package (tests) is compressed fast.
if [ "$profile" = release ]; then comp=(-Zxz); else comp=(-Zgzip -z1); fi
mkdir -p "$out"
deb="$(cd "$out" && pwd)/tack_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "${comp[@]}" "$pkg" "$deb" >&2
echo "$deb"
