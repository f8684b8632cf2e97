#!/usr/bin/env bash
# Install sglangd on a GPU host: binaries, example config, systemd unit,
# sysusers and tmpfiles snippets. Run as root from a checkout after
# `make build` (it builds if bin/ is missing).
#
#   deploy/install.sh               install and enable (does not start)
#   deploy/install.sh --start       ... and start sglangd
#   DESTDIR=/tmp/stage deploy/install.sh --no-systemd
#                                   stage files only (packaging, tests)
#
# Variables: PREFIX (default /usr/local), DESTDIR (default empty).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
start=0
systemd=1
for arg in "$@"; do
  case "$arg" in
    --start) start=1 ;;
    --no-systemd) systemd=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$here/bin/sglangd" ] || [ ! -x "$here/bin/sglangctl" ]; then
  make -C "$here" build
fi

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/sglangd" "$DESTDIR/lib/systemd/system" \
  "$DESTDIR/usr/lib/sysusers.d" "$DESTDIR/usr/lib/tmpfiles.d" "$DESTDIR$PREFIX/share/doc/sglangd"
install -m 0755 "$here/bin/sglangd" "$here/bin/sglangctl" "$DESTDIR$PREFIX/bin/"
sed "s|/usr/local/bin/sglangd|$PREFIX/bin/sglangd|; s|/usr/local/share/doc|$PREFIX/share/doc|" \
  "$here/deploy/sglangd.service" > "$DESTDIR/lib/systemd/system/sglangd.service"
chmod 0644 "$DESTDIR/lib/systemd/system/sglangd.service"
install -m 0644 "$here/deploy/sglangd.sysusers" "$DESTDIR/usr/lib/sysusers.d/sglangd.conf"
install -m 0644 "$here/deploy/sglangd.tmpfiles" "$DESTDIR/usr/lib/tmpfiles.d/sglangd.conf"
install -m 0644 "$here/README.md" "$DESTDIR$PREFIX/share/doc/sglangd/README.md"
# Never overwrite an operator's config or secrets.
if [ ! -e "$DESTDIR/etc/sglangd/sglangd.yaml" ]; then
  install -m 0640 "$here/configs/sglangd.yaml" "$DESTDIR/etc/sglangd/sglangd.yaml"
else
  echo "keeping existing /etc/sglangd/sglangd.yaml (new example: $here/configs/sglangd.yaml)"
fi
if [ ! -e "$DESTDIR/etc/sglangd/sglangd.env" ]; then
  umask 027
  printf '# Secrets for sglangd (KEY=value). Examples:\n# HF_TOKEN=hf_...\n# NGC_API_KEY=nvapi-...\n# HF_ENDPOINT=https://hf-mirror.com\n' \
    > "$DESTDIR/etc/sglangd/sglangd.env"
fi

# Check the installed config with the installed binary before touching systemd.
"$DESTDIR$PREFIX/bin/sglangd" config validate --config "$DESTDIR/etc/sglangd/sglangd.yaml"

if [ "$systemd" = 1 ] && [ -z "$DESTDIR" ]; then
  getent group docker >/dev/null || echo "warning: no docker group: install Docker Engine first" >&2
  systemd-sysusers /usr/lib/sysusers.d/sglangd.conf
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/sglangd.conf
  chgrp sglangd /etc/sglangd/sglangd.yaml /etc/sglangd/sglangd.env
  systemctl daemon-reload
  systemctl enable sglangd.service
  if [ "$start" = 1 ]; then
    systemctl restart sglangd.service
    systemctl --no-pager status sglangd.service || true
  fi
  echo "installed. Add users to the sglangd group to use sglangctl; edit /etc/sglangd/sglangd.yaml, then: systemctl start sglangd"
else
  echo "staged into ${DESTDIR:-/} (systemd steps skipped)"
fi
