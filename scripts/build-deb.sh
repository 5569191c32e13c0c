#!/usr/bin/env bash
# Builds the Debian package of stamps, target/debian/stamps_<version>_<arch>.deb,
# from the release binaries, with Debian's own dpkg-deb:
#
#   scripts/build-deb.sh            # then: sudo dpkg -i target/debian/stamps_*.deb
#
# dpkg-deb rather than cargo-deb: it is on every Debian machine, so CI
# compiles no packaging tool (cargo-deb takes minutes to build on two
# cores), and this script shows every file the package holds:
#
#   /usr/bin/stamps-server, /usr/bin/stamps-admin
#   /lib/systemd/system/stamps-server.service       (docs/deploy/debian)
#   /etc/stamps/stamps.toml                          (a conffile, root:stamps 0640)
#   /usr/share/man/man1/stamps-admin.1.gz            (stamps-admin man)
#   bash, zsh and fish completions                   (stamps-admin completions)
#   /usr/share/doc/stamps/                           (README and the operators' docs)
#
# The maintainer scripts (docs/deploy/debian/{postinst,prerm,postrm}) make
# the `stamps` system user and /var/lib/stamps (0700); neither remove nor
# purge deletes the data (docs/OPERATIONS.md, "Install").
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin stamps-server --bin stamps-admin
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
# The binaries need the glibc they were linked against, or newer.
glibc=$(dpkg-query -W -f='${Version}' libc6 | cut -d- -f1)
stage=target/debian/stamps_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

install -D -m 0755 target/release/stamps-server "$stage/usr/bin/stamps-server"
install -D -m 0755 target/release/stamps-admin "$stage/usr/bin/stamps-admin"
strip --strip-unneeded "$stage/usr/bin/stamps-server" "$stage/usr/bin/stamps-admin"
install -D -m 0644 docs/deploy/debian/stamps-server.service "$stage/lib/systemd/system/stamps-server.service"
install -D -m 0640 docs/deploy/debian/stamps.toml "$stage/etc/stamps/stamps.toml"

admin="$stage/usr/bin/stamps-admin"
mkdir -p "$stage/usr/share/man/man1" "$stage/usr/share/bash-completion/completions" \
    "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$admin" man | gzip -9n >"$stage/usr/share/man/man1/stamps-admin.1.gz"
"$admin" completions bash >"$stage/usr/share/bash-completion/completions/stamps-admin"
"$admin" completions zsh >"$stage/usr/share/zsh/vendor-completions/_stamps-admin"
"$admin" completions fish >"$stage/usr/share/fish/vendor_completions.d/stamps-admin.fish"
doc="$stage/usr/share/doc/stamps"
mkdir -p "$doc"
for file in README.md docs/OPERATIONS.md docs/SECURITY.md docs/PROXIES.md docs/SCALING.md docs/TOKENS.md; do
    install -m 0644 "$file" "$doc/"
done
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: stamps

Files: *
License: MIT OR Apache-2.0
COPYRIGHT
find "$stage/usr" -type d -exec chmod 0755 {} +

install -m 0755 docs/deploy/debian/postinst docs/deploy/debian/prerm docs/deploy/debian/postrm "$stage/DEBIAN/"
echo /etc/stamps/stamps.toml >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: stamps
Version: $version
Architecture: $arch
Maintainer: stamps developers <stamps@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: adduser, libc6 (>= $glibc)
Section: net
Priority: optional
Homepage: https://example.invalid/stamps
Description: self-hosted Stamps access-token API
 Exchanges static tokens for 24-hour HS256 JWTs, verifies JWTs, and
 authenticates requests with either, byte-compatible with the Stamps API,
 from one binary on an embedded store (or several replicas on PostgreSQL).
 Includes stamps-admin, which provisions merchants, users and tokens.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$stage" "target/debian/" >/dev/null
echo "target/debian/stamps_${version}_${arch}.deb"
