#!/usr/bin/env bash
# Runs the proxy conformance suite against a kernel that has IPVS.
#
# This machine's kernel has no IPVS, so the suite's TestIPVS skips under a
# plain `go test`. This script boots Debian's stock kernel (the
# linux-image-cloud-amd64 package, unpacked, not installed) under qemu (TCG)
# with a busybox initramfs holding the needed modules and the static
# conformance test binary, and runs TestIPVS (and TestNFTables, on that
# kernel too) there. The VM is thrown away afterwards; nothing on this
# machine is changed beyond the packages installed and files under $WORK.
#
# Usage: scripts/ipvs-test.sh   (make ipvs-test)   Exit 0 on PASS.
# Env: WORK (cache dir), KFLAVOUR (cloud-amd64|amd64), QEMU_TIMEOUT, SMP,
#      RUN (go test -run pattern, default 'TestIPVS|TestNFTables'),
#      BENCH (a -bench pattern: run benchmarks instead of tests, e.g.
#      FullSync10k, as `make ipvs-bench` does; BENCHTIME, default 1x).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-${TMPDIR:-/tmp}/orch-ipvs-test}
KFLAVOUR=${KFLAVOUR:-cloud-amd64}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-420}
SMP=${SMP:-2}
RUN=${RUN:-TestIPVS|TestNFTables}
BENCH=${BENCH:-}
BENCHTIME=${BENCHTIME:-1x}
MEM=1024M
GOTEST="-test.v -test.count=1 -test.timeout=300s -test.run '$RUN'"
if [ -n "$BENCH" ]; then
  MEM=2048M
  QEMU_TIMEOUT=${QEMU_TIMEOUT_BENCH:-3600}
  GOTEST="-test.count=1 -test.timeout=0 -test.run '^\$' -test.bench '$BENCH' -test.benchtime $BENCHTIME"
fi
export PATH=$PATH:/usr/local/go/bin
# Modules by name; dependencies are resolved against the unpacked kernel.
WANT_MODULES="ip_vs ip_vs_rr dummy veth bridge br_netfilter nf_tables nft_chain_nat nft_nat nft_masq nft_ct
  nft_fib_ipv4 nft_reject_ipv4 nft_numgen"

mkdir -p "$WORK/debs"
cd "$WORK"

# 1. host tools ---------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
apt_updated=
if [ ${#need[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq; apt_updated=1
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. kernel + modules (the metapackage names the real ABI package) -------------
KPKG=$(apt-cache depends "linux-image-$KFLAVOUR" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$KPKG" ] && [ -z "$apt_updated" ]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  KPKG=$(apt-cache depends "linux-image-$KFLAVOUR" | awk '/Depends: linux-image-/{print $2; exit}')
fi
[ -n "$KPKG" ] || { echo "ipvs-test: no linux-image-$KFLAVOUR package" >&2; exit 1; }
KVER=${KPKG#linux-image-}
KDIR=$WORK/kernel-$KVER
if [ ! -f "$KDIR/boot/vmlinuz-$KVER" ]; then
  (cd debs && apt-get download "$KPKG")
  rm -rf "$KDIR"; dpkg -x debs/"${KPKG}"_*.deb "$KDIR"
  depmod -b "$KDIR" "$KVER"   # the .deb ships no modules.dep
fi
echo "kernel: $KPKG"

# 3. static test binary ----------------------------------------------------------
(cd "$REPO" && CGO_ENABLED=0 go test -c -trimpath -ldflags='-s -w' -o "$WORK/proxy.test" ./proxy/conformance)

# 4. initramfs -------------------------------------------------------------------
ROOT=$WORK/initramfs
rm -rf "$ROOT"; mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,run}
cp /bin/busybox "$ROOT/bin/busybox"
cp "$WORK/proxy.test" "$ROOT/proxy.test"
: > "$ROOT/modules.list"
for want in $WANT_MODULES; do
  modprobe -C /dev/null -d "$KDIR" -S "$KVER" --show-depends "$want"
done | awk '$1=="insmod"{sub(".*/lib/modules/[^/]*/","",$2); if(!seen[$2]++) print $2}' |
while read -r rel; do
  dst=$ROOT/lib/modules/$KVER/${rel%.xz}; dst=${dst%.zst}
  mkdir -p "$(dirname "$dst")"
  case $rel in   # busybox insmod wants plain .ko
    *.ko.xz)  xz -dc "$KDIR/lib/modules/$KVER/$rel" > "$dst" ;;
    *.ko.zst) zstd -qdc "$KDIR/lib/modules/$KVER/$rel" > "$dst" ;;
    *)        cp "$KDIR/lib/modules/$KVER/$rel" "$dst" ;;
  esac
  echo "${dst#"$ROOT/lib/modules/$KVER/"}" >> "$ROOT/modules.list"
done
[ -s "$ROOT/modules.list" ] || { echo "ipvs-test: no modules resolved" >&2; exit 1; }
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
cat > "$ROOT/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
echo "init: kernel \$(uname -r)"
for m in \$(cat /modules.list); do
  insmod /lib/modules/\$(uname -r)/\$m || echo "init: insmod \$m FAILED"
done
depmod
ip link set lo up
cd /tmp
/proxy.test $GOTEST
echo "PROXY-TEST-EXIT: \$?"
poweroff -f
INIT
chmod +x "$ROOT/init"
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$WORK/initrd.cpio.gz"

# 5. boot (TCG: KVM is not usable here) ------------------------------------------
LOG=$WORK/vm-console.log
set +e
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
  -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
  -kernel "$KDIR/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 random.trust_cpu=on" \
  </dev/null 2>&1 | tee "$LOG"
qrc=${PIPESTATUS[0]}
set -e
tr -d '\r' < "$LOG" > "$LOG.txt"
if [ -n "$BENCH" ]; then
  if grep -q '^PROXY-TEST-EXIT: 0$' "$LOG.txt" && grep -q '^Benchmark.*/ipvs' "$LOG.txt"; then
    echo "ipvs-bench: done (log: $LOG.txt)"; grep '^Benchmark' "$LOG.txt"; exit 0
  fi
  echo "ipvs-bench: FAIL (qemu rc=$qrc; log: $LOG.txt)"; exit 1
fi
if grep -q '^PROXY-TEST-EXIT: 0$' "$LOG.txt" && grep -q '^--- PASS: TestIPVS' "$LOG.txt"; then
  echo "ipvs-test: PASS (log: $LOG.txt)"; exit 0
fi
echo "ipvs-test: FAIL (qemu rc=$qrc; log: $LOG.txt)"; exit 1
