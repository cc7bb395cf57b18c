#!/usr/bin/env bash
# Installs everything lanpeer's lab needs on a fresh Debian bookworm machine with Docker Engine:
# host packages (rar/unrar from non-free, mmdebstrap for the base image) and the project
# virtualenv. Idempotent: a second run only checks.
#
#   scripts/setup.sh            what every lab command needs
#   scripts/setup.sh --browser  also headless Chromium from Debian (the report's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
browser=0
[ "${1:-}" = "--browser" ] && browser=1

log() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v rar >/dev/null || need_apt+=(rar)
command -v unrar >/dev/null || need_apt+=(unrar)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v fusermount3 >/dev/null || need_apt+=(fuse3)  # harness/powerfs (power cuts)
if [ "$browser" = 1 ] && ! command -v chromium >/dev/null; then
  need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  # rar and unrar live in Debian's non-free component; the stock sources list only main.
  src=/etc/apt/sources.list.d/lanpeer-non-free.sources
  if [ ! -e "$src" ]; then
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    log "enabling non-free from $uri"
    as_root tee "$src" >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  log "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$py" -m venv .venv
fi
# .venv holds exactly requirements.lock (README "Dependencies"), checked by hash, whatever the
# registry serves today. Checked on every run (a fraction of a second) and synced when the lock
# or pyproject.toml changed or something was installed around it. pip installs only the locked
# uv (the one package it is asked for, with its hashes); uv then syncs the rest, removing what
# the lock does not hold, and lanpeer itself is built with the locked setuptools (no build
# isolation fetching an unlocked one).
stamp=.venv/.lanpeer-deps
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -m harness.lockfile >/dev/null 2>&1; then
  log "syncing .venv to requirements.lock"
  awk '/^uv==/{on=1} on{print} on && !/\\$/{exit}' requirements.lock >.venv/uv.req
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r .venv/uv.req
  .venv/bin/uv pip sync -q --python .venv/bin/python --require-hashes requirements.lock
  .venv/bin/uv pip install -q --python .venv/bin/python --no-deps --no-build-isolation -e .
  .venv/bin/python -m harness.lockfile
  echo "$want" >"$stamp"
fi
log "ready"
