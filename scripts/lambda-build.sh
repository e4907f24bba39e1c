#!/usr/bin/env bash
# `make build`: the four Lambda bootstraps, built once for the whole workspace with cargo-lambda.
#
#   target/lambda/whatsapp-inbound/bootstrap
#   target/lambda/form-intake/bootstrap
#   target/lambda/conversation-worker/bootstrap
#   target/lambda/staff-inbound/bootstrap
#
# template.yaml points each function's CodeUri at its folder, so `sam deploy` uploads them as
# they are (no `sam build`). Installs what is missing: cargo-lambda and ziglang (its cross
# linker) from PyPI, and rustup's aarch64-unknown-linux-gnu target. Without that target (a
# machine that cannot reach rustup's servers) it builds for x86_64 instead and says so: then
# deploy with `Architecture=x86_64` (see docs/deploy.md).
#
#   LAMBDA_ARCH=arm64|x86_64   force an architecture (default arm64, falling back to x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."

functions=(whatsapp-inbound form-intake conversation-worker staff-inbound)
max_bytes=8000000 # 8 MB (decimal, the stricter reading): a larger bootstrap means something went wrong
start=$(date +%s)

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# Where pip puts executables: Python's scripts directory and, for `pip --user`, the user's.
for dir in $(python3 -c 'import site, sysconfig; print(sysconfig.get_path("scripts")); print(site.getuserbase() + "/bin")'); do
  case ":$PATH:" in *":$dir:"*) ;; *) PATH="$PATH:$dir" ;; esac
done

pip_install() {
  # A Python that is externally managed (PEP 668, Debian's) takes packages only into the user's site.
  python3 -m pip install --quiet "$@" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "$@"
}

if ! command -v cargo-lambda >/dev/null; then
  echo "installing cargo-lambda (PyPI)"
  pip_install "cargo-lambda>=1.8,<2"
  hash -r
fi
# cargo-lambda links with zig; it finds the `ziglang` Python package (`python3 -m ziglang`).
if ! command -v zig >/dev/null && ! python3 -c 'import ziglang' 2>/dev/null; then
  echo "installing ziglang (PyPI), cargo-lambda's cross linker"
  pip_install ziglang
fi

arch=${LAMBDA_ARCH:-arm64}
case "$arch" in
  arm64)
    target=aarch64-unknown-linux-gnu
    if ! rustup target list --installed | grep -qx "$target"; then
      echo "adding the rustup target $target"
      if ! rustup target add "$target"; then
        echo >&2
        echo "WARNING: could not add the rustup target $target; building for x86_64 instead." >&2
        echo "WARNING: deploy them with the stack parameter Architecture=x86_64 (make deploy asks" >&2
        echo "WARNING: for it), or the functions will not start." >&2
        echo >&2
        arch=x86_64
      fi
    fi
    ;;
  x86_64) ;;
  *)
    echo "LAMBDA_ARCH must be arm64 or x86_64, not $arch" >&2
    exit 2
    ;;
esac
if [ "$arch" = arm64 ]; then
  arch_flag=--arm64 target=aarch64-unknown-linux-gnu
else
  arch_flag=--x86-64 target=x86_64-unknown-linux-gnu
fi

packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done
echo "cargo lambda build --release $arch_flag ${packages[*]}"
cargo lambda build --release "$arch_flag" "${packages[@]}"

echo
# cargo-lambda writes to <target dir>/lambda/<binary>/bootstrap; template.yaml expects target/.
lambda_dir="${CARGO_TARGET_DIR:-target}/lambda"
status=0
for f in "${functions[@]}"; do
  bootstrap="$lambda_dir/$f/bootstrap"
  if [ ! -f "$bootstrap" ]; then
    echo "MISSING  $bootstrap" >&2
    status=1
    continue
  fi
  bytes=$(stat -c %s "$bootstrap")
  size=$(awk -v b="$bytes" 'BEGIN { printf "%.2f MB", b / 1000000 }')
  if [ "$bytes" -ge "$max_bytes" ]; then
    echo "TOO BIG  $bootstrap: $size ($bytes bytes, the limit is 8 MB)" >&2
    status=1
  else
    printf '%-44s %8s  (%s bytes)\n' "$bootstrap" "$size" "$bytes"
  fi
done
echo "$arch" >"$lambda_dir/ARCHITECTURE"
if [ $status -ne 0 ]; then
  echo "A bootstrap over 8 MB usually carries a second HTTP/TLS stack: compare" >&2
  echo "  cargo tree -e normal -p <function> --target $target -d | grep -E '^(hyper|rustls|h2) '" >&2
  echo "  cargo tree -e normal -p <function> --target $target -i aws-lc-sys" >&2
fi
echo "built for $arch in $(($(date +%s) - start)) s"
exit $status
