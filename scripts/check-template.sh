#!/usr/bin/env bash
# Lints template.yaml as CI can without an AWS account: cfn-lint, then `sam validate --lint`.
#
# cfn-lint and the SAM CLI come from PyPI into their own virtual environment (DEPLOY_TOOLS,
# default ~/.cache/whatsapp-retell-bridge/deploy-tools), pinned, installed once: SAM CLI pins
# boto3/botocore versions that would otherwise replace those of the AWS CLI or moto.
# `make deploy` uses the SAM CLI from there too.
#
#   scripts/check-template.sh            install what is missing, then lint
#   scripts/check-template.sh --install  only install; print the tools' directory
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
tools=${DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/whatsapp-retell-bridge/deploy-tools}
bin="$tools/bin"

installed() {
  [ -x "$bin/sam" ] && [ -x "$bin/cfn-lint" ] \
    && "$bin/sam" --version 2>/dev/null | grep -q " $SAM_CLI_VERSION\$" \
    && [ "$("$bin/cfn-lint" --version 2>/dev/null)" = "cfn-lint $CFN_LINT_VERSION" ]
}

if ! installed; then
  echo "installing aws-sam-cli $SAM_CLI_VERSION and cfn-lint $CFN_LINT_VERSION (PyPI) into $tools"
  start=$(date +%s)
  if ! python3 -m venv --clear "$tools" 2>/dev/null; then
    echo "python3 -m venv is not available (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$bin/python" -m pip install --quiet --disable-pip-version-check \
    "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
  echo "installed in $(($(date +%s) - start)) s"
fi
if [ "${1:-}" = --install ]; then
  echo "$bin"
  exit 0
fi

# No AWS account needed: both read only the template and their bundled resource specs, which
# need a region (checked without credentials: `sam validate --lint` never calls AWS).
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0

# Informational findings too: any finding fails, unless the template ignores it with a reason.
echo "cfn-lint --include-checks I template.yaml"
"$bin/cfn-lint" --include-checks I --regions "$AWS_DEFAULT_REGION" -- template.yaml
echo "cfn-lint: no errors, warnings or informational findings"

echo "sam validate --lint --template template.yaml"
"$bin/sam" validate --lint --template template.yaml --region "$AWS_DEFAULT_REGION"
