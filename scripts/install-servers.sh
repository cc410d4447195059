#!/usr/bin/env bash
# Install the servers that the integration tests, the benchmarks and the demo run on this machine:
# Mosquitto (broker and command-line clients) and VictoriaMetrics, from the distribution's packages;
# libfaketime (package faketime), with which the fault tests move an edge agent's wall clock; and
# openssl, which the installer walk-through uses.
#
# Idempotent: does nothing when all are installed. The tests never use the system services these
# packages bring; they start their own instances on free loopback ports.
set -euo pipefail

packages=(mosquitto mosquitto-clients victoria-metrics faketime openssl)

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
# mosquitto lives in /usr/sbin, which is not on every user's PATH.
have mosquitto || [[ -x /usr/sbin/mosquitto ]] || [[ -x /usr/local/sbin/mosquitto ]] || missing+=(mosquitto)
have mosquitto_sub || missing+=(mosquitto_sub)
have victoria-metrics || missing+=(victoria-metrics)
have_libfaketime() { compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null; }
have_libfaketime || missing+=(libfaketime)
# The installer walk-through in README.md makes the site secret with openssl.
have openssl || missing+=(openssl)

if ((${#missing[@]} == 0)); then
    echo "install-servers: mosquitto, mosquitto_sub, victoria-metrics and libfaketime are installed"
    exit 0
fi

echo "install-servers: missing ${missing[*]}; installing ${packages[*]}"

manual_help() {
    cat >&2 <<EOF
install-servers: $1
Install these packages yourself, then run this again:
    Debian/Ubuntu:  sudo apt-get install ${packages[*]}
    elsewhere:      Mosquitto 2.x (mosquitto, mosquitto_sub on PATH or /usr/sbin),
                    single-node VictoriaMetrics (victoria-metrics on PATH)
                    and libfaketime (/usr/lib/<arch>/faketime/libfaketime.so.1)
EOF
    exit 1
}

have apt-get || manual_help "apt-get not found"

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    have sudo || manual_help "not root, and sudo is not available"
    if [[ -t 0 ]]; then
        as_root=(sudo)
    else
        as_root=(sudo -n) # no terminal to ask for a password on: fail instead of hanging
    fi
fi

# Where no systemd runs (containers, CI), the packages' maintainer scripts start the services
# through their init scripts and abort the installation if one fails to start (say, port 1883
# taken). Nothing here needs those services, so unless the machine already has a policy, forbid
# starting services for the duration of this install (exit 101 is "action forbidden").
policy=/usr/sbin/policy-rc.d
if [[ ! -d /run/systemd/system && ! -e $policy ]]; then
    printf '#!/bin/sh\n# Temporary, from anju scripts/install-servers.sh\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${packages[@]}"

for binary in mosquitto_sub victoria-metrics; do
    have "$binary" || manual_help "$binary is still missing after the install"
done
have mosquitto || [[ -x /usr/sbin/mosquitto ]] || manual_help "mosquitto is still missing after the install"
have_libfaketime || manual_help "libfaketime is still missing after the install"
echo "install-servers: done"
