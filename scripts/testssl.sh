#!/usr/bin/env bash
# Runs testssl.sh against a hub on loopback and fails if the hub offers a weak protocol (SSLv2,
# SSLv3, TLS 1.0, TLS 1.1) or a weak cipher (anything but AEAD suites with forward secrecy).
#
#   scripts/testssl.sh            # builds the debug binary if QUOTAHUB_BIN is not set
#   QUOTAHUB_BIN=target/release/quotahub scripts/testssl.sh
#
# The hub requires a client certificate; testssl.sh has none, but the protocols and ciphers are
# settled in the ServerHello, before the certificate is asked for, so it still lists them.
# testssl.sh (the Debian package) is installed with apt-get when missing; jq reads its report.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

testssl=$(command -v testssl.sh || command -v testssl || true)
if [ -z "$testssl" ]; then
    echo "installing testssl.sh (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq testssl.sh jq >/dev/null
    testssl=$(command -v testssl.sh || command -v testssl)
fi
command -v jq >/dev/null || DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq jq >/dev/null

bin=${QUOTAHUB_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet --bin quotahub
    bin="${CARGO_TARGET_DIR:-target}/debug/quotahub"
fi

work=$(mktemp -d)
hub=""
cleanup() {
    if [ -n "$hub" ]; then kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A hub with development certificates on a free loopback port.
"$bin" pki init --dir "$work/pki" >/dev/null
mkdir -p "$work/data"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --no-dev-pki \
    --tls-ca "$work/pki/ca.pem" --tls-cert "$work/pki/server.pem" \
    --tls-key "$work/pki/server-key.pem" >"$work/hub.log" 2>&1 &
hub=$!
address=""
for _ in $(seq 1 300); do
    address=$(sed -n 's|^quotahub listening on https://\([^ ]*\) .*|\1|p' "$work/hub.log")
    [ -n "$address" ] && break
    kill -0 "$hub" 2>/dev/null || { cat "$work/hub.log"; echo "the hub did not start" >&2; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { cat "$work/hub.log"; echo "the hub did not say where it listens" >&2; exit 1; }
echo "hub on $address; running $testssl"

# Protocols, the standard cipher categories, and every cipher per protocol.
"$testssl" --quiet --color 0 --warnings off --protocols --std --each-cipher \
    --jsonfile "$work/testssl.json" "$address" | tee "$work/testssl.txt" \
    || echo "(testssl.sh exited with status $?; its report decides)"
[ -s "$work/testssl.json" ] || { echo "testssl.sh wrote no report" >&2; exit 1; }

report="$work/testssl.json"
[ -n "${TESTSSL_REPORT:-}" ] && cp "$report" "$TESTSSL_REPORT"
# The report must have judged each weak protocol and cipher category, or silence proves nothing.
judged=$(jq '[.[] | select(.id | test("^(SSLv2|SSLv3|TLS1|TLS1_1|cipherlist_(NULL|aNULL|EXPORT|LOW|3DES_IDEA))$"))] | length' "$report")
[ "$judged" -eq 9 ] || { echo "the report judged $judged of the 9 weak protocols and categories" >&2; exit 1; }
# Weak protocols: each must be "not offered".
weak_protocols=$(jq -r '.[] | select(.id | test("^(SSLv2|SSLv3|TLS1|TLS1_1)$"))
    | select(.finding | test("^not offered") | not) | "\(.id): \(.finding)"' "$report")
# Weak cipher categories of --std: NULL, anonymous, export, low, 3DES/IDEA, and the CBC ones
# testssl calls obsoleted (AVERAGE in older versions); each must be "not offered".
weak_categories=$(jq -r '.[] | select(.id | test("^cipherlist_(NULL|aNULL|EXPORT|LOW|3DES_IDEA|OBSOLETED|AVERAGE)$"))
    | select(.finding | test("^not offered") | not) | "\(.id): \(.finding)"' "$report")
# Every cipher offered (--each-cipher) must be an AEAD suite (GCM or ChaCha20-Poly1305) with an
# ephemeral key exchange (TLS 1.3 suites, or ECDHE/DHE).
offered=$(jq -r '.[] | select(.id | test("^cipher_x")) | .finding' "$report")
weak_ciphers=$(printf '%s\n' "$offered" | grep -v '^$' \
    | grep -Ev '(GCM|CHACHA20|POLY1305)' || true)
weak_kx=$(printf '%s\n' "$offered" | grep -v '^$' \
    | grep -Ev '(TLS_AES|TLS_CHACHA20|ECDHE|DHE)' || true)

echo
echo "ciphers offered:"
printf '%s\n' "$offered" | sed 's/^ */  /'
status=0
for problem in "$weak_protocols" "$weak_categories" "$weak_ciphers" "$weak_kx"; do
    if [ -n "$problem" ]; then
        printf 'WEAK: %s\n' "$problem" >&2
        status=1
    fi
done
if [ -z "$offered" ]; then
    echo "testssl.sh listed no cipher: cannot judge" >&2
    status=1
fi
[ "$status" -eq 0 ] && echo "testssl.sh: no weak protocol or cipher offered"
exit "$status"
