#!/usr/bin/env bash
# Host tuning for a Tern media server. Dry run by default: prints what it would change and why,
# changes nothing. `--apply` (as root) makes the changes for this boot (sysctl -w, /proc, sysfs);
# persist them with the printed sysctl.d / systemd snippets.
#
#   scripts/tune-host.sh [--apply] [--media-cores N] [--udp-mib MIB]
#
# What it plans:
#   - UDP socket buffers: each shard asks for 8 MiB receive / 4 MiB send; the kernel caps them
#     at net.core.rmem_max / wmem_max unless the process has CAP_NET_ADMIN.
#   - memlock: glommio's io_uring memory counts against RLIMIT_MEMLOCK (scripts/tern.service
#     sets LimitMEMLOCK).
#   - CPUs: the last N online CPUs run media shards (--cores); NIC interrupts and RPS/XPS are
#     steered to the others, so packet processing does not preempt the shards.
#   - CPU frequency governor: performance on the media cores (no ramp-up latency).
set -euo pipefail

apply=0
media_cores=""
udp_mib=16
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --media-cores) media_cores="$2"; shift ;;
    --udp-mib) udp_mib="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "tune-host: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ncpu=$(nproc --all)
if [ -z "$media_cores" ]; then
  # Leave one CPU in four (at least one) for interrupts, the OS and the inference workers.
  media_cores=$(( ncpu - (ncpu + 3) / 4 ))
  [ "$media_cores" -ge 1 ] || media_cores=1
fi
if ! [[ "$media_cores" =~ ^[0-9]+$ ]] || [ "$media_cores" -lt 1 ] || [ "$media_cores" -gt "$ncpu" ]; then
  echo "tune-host: --media-cores must be 1..$ncpu" >&2; exit 2
fi
first_media=$(( ncpu - media_cores ))
last=$(( ncpu - 1 ))
cores="$first_media-$last"
[ "$media_cores" -eq 1 ] && cores="$last"
house_mask=""
if [ "$first_media" -gt 0 ]; then
  # Hex mask of the housekeeping CPUs 0..first_media-1 (for IRQ affinity and RPS/XPS).
  house_mask=$(python3 -c "print(format((1 << $first_media) - 1, 'x'))")
fi
bytes=$(( udp_mib * 1024 * 1024 ))

say() { printf '%s\n' "$*"; }
change() {
  # change WHAT CURRENT WANTED COMMAND...
  local what="$1" cur="$2" want="$3"; shift 3
  if [ "$cur" = "$want" ]; then
    say "  ok      $what = $cur"
  elif [ "$apply" -eq 1 ]; then
    "$@" && say "  set     $what: $cur -> $want"
  else
    say "  would   $what: $cur -> $want"
  fi
}
read_or() { cat "$1" 2>/dev/null || echo "$2"; }

say "Tern host tuning ($([ "$apply" -eq 1 ] && echo applying || echo 'dry run: nothing changes; --apply to change'))"
say "CPUs: $ncpu online; media shards on $cores (--cores $cores), housekeeping on the rest"
say ""
say "UDP buffers (each shard asks for 8 MiB receive, 4 MiB send):"
for k in net.core.rmem_max net.core.wmem_max; do
  cur=$(sysctl -n "$k" 2>/dev/null || echo unknown)
  if [ "$cur" != unknown ] && [ "$cur" -ge "$bytes" ]; then
    say "  ok      $k = $cur"
  else
    change "$k" "$cur" "$bytes" sysctl -qw "$k=$bytes"
  fi
done
cur=$(sysctl -n net.core.netdev_max_backlog 2>/dev/null || echo unknown)
if [ "$cur" != unknown ] && [ "$cur" -ge 5000 ]; then
  say "  ok      net.core.netdev_max_backlog = $cur"
else
  change net.core.netdev_max_backlog "$cur" 5000 sysctl -qw net.core.netdev_max_backlog=5000
fi

say ""
say "memlock (io_uring memory; --io-memory-kib per shard):"
cur=$(ulimit -l)
if [ "$cur" = unlimited ]; then
  say "  ok      RLIMIT_MEMLOCK = unlimited"
else
  say "  note    RLIMIT_MEMLOCK = $cur KiB for this shell; the systemd unit sets LimitMEMLOCK=infinity"
fi

say ""
say "Interrupts and RPS/XPS away from the media CPUs:"
if [ -z "$house_mask" ]; then
  say "  skip    every CPU runs a shard; nothing to steer to (use --media-cores)"
else
  for irq in /proc/irq/[0-9]*; do
    f="$irq/smp_affinity"
    [ -w "$f" ] || [ "$apply" -eq 0 ] || continue
    [ -e "$f" ] || continue
    cur=$(read_or "$f" unknown)
    change "irq $(basename "$irq") affinity" "$cur" "$house_mask" sh -c "echo $house_mask > $f" 2>/dev/null || \
      say "  keep    irq $(basename "$irq") (the kernel refused: managed interrupt)"
  done
  for q in /sys/class/net/*/queues/rx-*/rps_cpus /sys/class/net/*/queues/tx-*/xps_cpus; do
    [ -e "$q" ] || continue
    case "$q" in */lo/*) continue ;; esac
    cur=$(read_or "$q" unknown)
    change "$q" "$cur" "$house_mask" sh -c "echo $house_mask > $q" 2>/dev/null || \
      say "  keep    $q (not writable)"
  done
fi

say ""
say "CPU frequency governor on the media CPUs:"
found=0
for c in $(seq "$first_media" "$last"); do
  g="/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor"
  [ -e "$g" ] || continue
  found=1
  change "cpu$c governor" "$(read_or "$g" unknown)" performance sh -c "echo performance > $g"
done
[ "$found" -eq 1 ] || say "  skip    no cpufreq on this machine (a VM, or fixed frequency)"

say ""
say "Persist across reboots:"
say "  /etc/sysctl.d/60-tern.conf:"
say "    net.core.rmem_max = $bytes"
say "    net.core.wmem_max = $bytes"
say "    net.core.netdev_max_backlog = 5000"
say "  systemd: scripts/tern.service (LimitMEMLOCK=infinity, stop timeout above --drain-timeout)"
say "  run:    tern serve --cores $cores --workers $(( first_media > 0 ? first_media : 1 ))"
