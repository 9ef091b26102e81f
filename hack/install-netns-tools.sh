#!/usr/bin/env bash
# Installs the programs the network-namespace tests run (internal/harness/netnstest, internal/imdsredirect): ip (iproute2)
# for namespaces and veths, iptables for the IMDS redirect, conntrack, and sysctl (procps) for the namespaces'
# forwarding settings. A fresh CI machine may lack some of them. Idempotent: installs only what is missing, and
# refreshes the package lists only when an install from the current lists fails.
#
# Usage: hack/install-netns-tools.sh     (as root, on Debian)
set -euo pipefail

# Root's PATH has /usr/sbin, where these live; make sure a trimmed PATH does not hide installed tools.
export PATH=$PATH:/usr/sbin:/sbin

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
command -v iptables-save >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v sysctl >/dev/null || missing+=(procps)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
# De-duplicate (iptables may be listed twice).
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

echo "[install-netns-tools] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }

for tool in ip iptables iptables-save conntrack sysctl; do
  command -v "$tool" >/dev/null || { echo "[install-netns-tools] $tool is still missing after installing ${missing[*]}" >&2; exit 1; }
done
