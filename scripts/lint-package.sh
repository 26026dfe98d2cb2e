#!/usr/bin/env bash
# Runs lintian on a Debian package without installing lintian:
#
#   scripts/lint-package.sh DEB [LINTIAN OPTIONS...]   (default: -EvI --pedantic)
#
# lintian needs about 150 packages (Perl modules), so, unless it is already
# installed, this downloads lintian and the packages this machine lacks for it
# (`apt-get download`, from the machine's Debian mirror) into a temporary
# directory, unpacks them there and runs lintian from there with this
# machine's perl. Nothing is installed; the directory is removed at exit.
# The exit code is lintian's (non-zero when it reports an error).
set -euo pipefail
deb=$(realpath "${1:?usage: scripts/lint-package.sh DEB [LINTIAN OPTIONS...]}")
shift
opts=("$@")
[ ${#opts[@]} -gt 0 ] || opts=(-EvI --pedantic)

if command -v lintian >/dev/null; then
  exec lintian "${opts[@]}" "$deb"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tack-lintian.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/root"
pkgs=$(apt-get install -s -qq lintian 2>/dev/null | awk '/^Inst/ { print $2 }')
[ -n "$pkgs" ] || { echo "lint-package.sh: apt-get cannot resolve lintian (apt-get update?)" >&2; exit 1; }
# shellcheck disable=SC2086 # one word per package
(cd "$work/debs" && apt-get download -qq $pkgs 2>/dev/null)
for d in "$work"/debs/*.deb; do
  dpkg-deb -x "$d" "$work/root"
done
r="$work/root"
perl_v=$(perl -e 'printf "%vd", $^V' | cut -d. -f1,2)
export PERL5LIB="$r/usr/share/perl5:$r/usr/lib/x86_64-linux-gnu/perl5/$perl_v:$r/usr/share/perl/$perl_v:$r/usr/lib/x86_64-linux-gnu/perl/$perl_v:$r/usr/share/lintian/lib"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
PERL5LIB=${PERL5LIB//x86_64-linux-gnu/$multiarch}
export PATH="$r/usr/bin:$PATH"
perl "$r/usr/bin/lintian" --include-dir "$r/usr/share/lintian" "${opts[@]}" "$deb"
