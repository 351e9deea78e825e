#!/usr/bin/env bash
# Installs, through apt, what a make target needs and the machine lacks.
# Usage: scripts/deps.sh GROUP...   (groups: base, bench, runtime, images)
# Nothing is installed when everything is present, so this is cheap to run
# before every target.
set -euo pipefail

declare -A packages=(
  [base]="curl iproute2 ca-certificates"
  [bench]="etcd-server etcd-client"
  # real containers: node/runtime's tests and the demo's workers
  [runtime]="containerd runc containernetworking-plugins nftables iproute2 docker-registry busybox-static"
  # make images: busybox is the test images' base layer (static, it runs anywhere)
  [images]="busybox-static"
)
# command (or file) that proves each package is present
declare -A probe=(
  [curl]=curl [iproute2]=ip [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [etcd-server]=etcd [etcd-client]=etcdctl
  [containerd]=containerd [runc]=runc [containernetworking-plugins]=/usr/lib/cni/bridge
  [nftables]=nft [docker-registry]=docker-registry [busybox-static]=/bin/busybox
)

missing=()
for group in "$@"; do
  [[ -n "${packages[$group]+x}" ]] || { echo "deps.sh: unknown group '$group'" >&2; exit 2; }
  for pkg in ${packages[$group]}; do
    p=${probe[$pkg]}
    if [[ "$p" == /* ]]; then [[ -e "$p" ]] && continue; else command -v "$p" >/dev/null 2>&1 && continue; fi
    missing+=("$pkg")
  done
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: missing packages ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
