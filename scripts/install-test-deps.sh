#!/usr/bin/env bash
# Installs what `make test` needs and a new machine lacks; does nothing for what is there.
#   PostgreSQL server and client, pgTAP and pg_prove (Debian packages),
#   postrust, a PostgREST-compatible server (from the Rust package registry),
#   moto's server `moto_server`, an SQS-compatible server (from PyPI),
#   rustfmt and clippy (rustup components),
#   Chromium and its WebDriver server (Debian's chromium and chromium-driver) and the npm
#   package axe-core, for the browser test of the hosted form (tests/tests/browser).
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
if [ -z "$pg_major" ] || [ ! -x "/usr/lib/postgresql/$pg_major/bin/initdb" ]; then
  packages+=(postgresql postgresql-client)
fi
command -v psql >/dev/null || packages+=(postgresql-client)
command -v pg_prove >/dev/null || packages+=(libtap-parser-sourcehandler-pgtap-perl)
command -v python3 >/dev/null || packages+=(python3 python3-pip)
if [ -n "$pg_major" ] && ! ls "/usr/share/postgresql/$pg_major/extension/pgtap.control" >/dev/null 2>&1; then
  packages+=("postgresql-$pg_major-pgtap")
fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  # The Debian package of a new server version also wants its pgTAP.
  pg_major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  if ! ls "/usr/share/postgresql/$pg_major/extension/pgtap.control" >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$pg_major-pgtap" >/dev/null
  fi
fi

# The browser, without its desktop recommendations; a font so the page's text renders.
browser=()
command -v chromium >/dev/null || browser+=(chromium)
command -v chromedriver >/dev/null || browser+=(chromium-driver)
command -v npm >/dev/null || browser+=(npm)
[ -n "$(fc-list 2>/dev/null | head -n 1)" ] || browser+=(fonts-liberation)
if [ ${#browser[@]} -gt 0 ]; then
  echo "installing ${browser[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${browser[@]}" >/dev/null
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v postrust >/dev/null; then
  echo "installing postrust-server 3.1.0 (about 5 minutes on 2 cores)"
  # Not --locked: its lock file pins a webpki-roots release the registry no longer serves.
  cargo install --quiet postrust-server --version 3.1.0
fi

# Where sandbox/src/moto.rs looks: the PATH, then Python's scripts directories (`pip --user`'s too).
moto_server_found() {
  command -v moto_server >/dev/null && return 0
  local dir
  for dir in $(python3 -c 'import site, sysconfig; print(sysconfig.get_path("scripts")); print(site.getuserbase() + "/bin")' 2>/dev/null); do
    [ -x "$dir/moto_server" ] && return 0
  done
  return 1
}
if ! moto_server_found; then
  echo "installing moto[server] 5.x (an SQS-compatible server for the queue tests)"
  # A Python that is externally managed (PEP 668, Debian's) takes it only into the user's site.
  python3 -m pip install --quiet "moto[server]>=5.2,<6" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "moto[server]>=5.2,<6"
fi

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# axe-core's axe.min.js, which the browser test injects into the page (tests/tests/browser).
axe_dir="${XDG_CACHE_HOME:-$HOME/.cache}/whatsapp-retell-bridge/axe-core"
if [ ! -s "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
  echo "installing the npm package axe-core 4.x into $axe_dir"
  mkdir -p "$axe_dir"
  npm install --silent --no-audit --no-fund --no-save --prefix "$axe_dir" "axe-core@4" >/dev/null
fi
