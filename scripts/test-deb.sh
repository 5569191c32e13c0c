#!/usr/bin/env bash
# Installs the Debian package (scripts/build-deb.sh) on this machine, runs
# the installed server as the `stamps` user with the installed
# configuration (no systemd needed), runs the README quickstart against
# it, then removes and purges the package and checks the data stayed.
# CI runs it; as root, on a machine where it may install packages.
#
#   scripts/build-deb.sh && sudo scripts/test-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "test-deb: run as root (it installs the package)" >&2; exit 2; }
deb=$(ls -t target/debian/stamps_*.deb | head -n 1)
work=$(mktemp -d)
server=
installed=
# This machine as it was, whatever happened: the package purged, its data
# directory and user deleted.
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [ -n "$installed" ]; then
        dpkg -P stamps >/dev/null 2>&1 || true
        rm -rf /var/lib/stamps
        userdel stamps 2>/dev/null || true
        groupdel stamps 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-deb: $*" >&2; exit 1; }
owner_mode() { stat -c '%U:%G %a' "$1"; }

if dpkg -s stamps >/dev/null 2>&1 || [ -e /var/lib/stamps ]; then
    fail "stamps is already installed here, or /var/lib/stamps exists: not touching them"
fi

echo "test-deb: dpkg -i $deb"
installed=1
dpkg -i "$deb" >/dev/null
for file in /usr/bin/stamps-server /usr/bin/stamps-admin /lib/systemd/system/stamps-server.service \
    /usr/share/man/man1/stamps-admin.1.gz /usr/share/bash-completion/completions/stamps-admin \
    /usr/share/zsh/vendor-completions/_stamps-admin /usr/share/fish/vendor_completions.d/stamps-admin.fish \
    /usr/share/doc/stamps/README.md; do
    [ -e "$file" ] || fail "$file is missing"
done
getent passwd stamps >/dev/null || fail "no stamps user"
[ "$(owner_mode /etc/stamps/stamps.toml)" = "root:stamps 640" ] || fail "/etc/stamps/stamps.toml is $(owner_mode /etc/stamps/stamps.toml)"
[ "$(owner_mode /var/lib/stamps)" = "stamps:stamps 700" ] || fail "/var/lib/stamps is $(owner_mode /var/lib/stamps)"
zcat /usr/share/man/man1/stamps-admin.1.gz | grep -q '^\.TH' || fail "the man page is not roff"

# The installed server, as the stamps user, with the installed file; only
# the port is chosen here (the file's 8080 may be taken on this machine).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# setpriv execs the server (runuser would stay its parent and take the
# SIGTERM meant for it).
STAMPS_LISTEN="127.0.0.1:$port" setpriv --reuid=stamps --regid=stamps --init-groups \
    /usr/bin/stamps-server --config /etc/stamps/stamps.toml 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/server.log" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server did not start"; }
    sleep 0.1
done
grep -q "listening on" "$work/server.log" || fail "the server did not listen within 10 s"
[ "$(owner_mode /var/lib/stamps/jwt-secret)" = "stamps:stamps 600" ] || fail "jwt-secret is $(owner_mode /var/lib/stamps/jwt-secret)"

# The README quickstart, with the installed admin (as root, through the
# server's admin socket) and this server's URL.
awk '/<!-- quickstart:begin -->/ {on = 1; next} /<!-- quickstart:end -->/ {on = 0} on && !/^```/' README.md |
    sed -e "s|^URL=.*|URL=http://127.0.0.1:$port|" \
        -e "s|^DATA=.*|DATA=/var/lib/stamps|" \
        -e "s|^ADMIN=.*|ADMIN=\"stamps-admin --data-dir \$DATA\"|" \
        -e "/^cargo build/d" >"$work/quickstart.sh"
(cd "$work" && bash -euo pipefail quickstart.sh) >"$work/quickstart.out" 2>&1 ||
    { cat "$work/quickstart.out" >&2; fail "the quickstart failed"; }
grep -q '"token_type":"access"' "$work/quickstart.out" || fail "verify-token did not answer: $(cat "$work/quickstart.out")"
[ "$(grep -o '{"pong":{"merchant":"My Merchant","merchant_id":1}}' "$work/quickstart.out" | wc -l)" -eq 2 ] ||
    fail "ping did not answer twice: $(cat "$work/quickstart.out")"
grep -qi 'x-stamps-user-id: 5870' "$work/quickstart.out" || fail "the check did not name the user"

kill -TERM "$server"
wait "$server" || fail "the server did not exit 0 at SIGTERM"
server=

echo "test-deb: dpkg -r stamps (the data and the configuration stay)"
dpkg -r stamps >/dev/null
[ ! -e /usr/bin/stamps-server ] || fail "remove left the binary"
[ -e /var/lib/stamps/db ] || fail "remove deleted the data"
[ -e /etc/stamps/stamps.toml ] || fail "remove deleted the configuration"
echo "test-deb: dpkg -P stamps (the configuration goes, the data stays)"
dpkg -P stamps >/dev/null 2>&1
[ ! -e /etc/stamps/stamps.toml ] || fail "purge left the configuration"
[ -e /var/lib/stamps/db ] || fail "purge deleted the data"
echo "test-deb: installed, served the quickstart, removed and purged: ok"
