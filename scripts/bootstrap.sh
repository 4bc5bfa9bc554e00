#!/usr/bin/env bash
# Installs what IoTCast needs on Debian 12, once: system packages that are missing
# (mosquitto, redis-server, Python 3.11 with venv, Java for the PySpark test), the .venv and its pinned packages.
# Re-running it is cheap: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v python3.11 >/dev/null 2>&1 || missing+=(python3 python3-venv python3-dev)
if [ "${IOTCAST_WITH_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python_bin=$(command -v python3.11)
stamp=".venv/.installed-$(sha256sum requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv with $("$python_bin" --version) and the pinned requirements (a few minutes the first time)"
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  # pip's own exit status decides (pipefail); the filter only hides its "is ignored" chatter.
  pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored" || true; }; }
  pip_install torch==2.13.0
  pip_install -r requirements.txt
  # fail loudly if the install did not take, before the stamp says it did
  .venv/bin/python -c "import torch, gluonts, django, rest_framework, celery, duckdb, pyarrow, boto3, moto, paho.mqtt, awsiot, pyspark, playwright"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
