#!/usr/bin/env bash
# Back to back on this 2-core VM: engine on CPU 0, tern-bench on CPU 1; dev profile like the earlier reports.
# /tmp/tern-before: 82203d4 (start of this stop); /tmp/tern-after: the pull-based shard core.
set -euo pipefail
cd /work/main
B=target/debug/tern-bench; D=perf-reports/2026-11-29-pull-core
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-before --report-dir $D/steady-before
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-after --report-dir $D/steady-after
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-after --report-dir $D/steady-after2
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-before --report-dir $D/steady-before2
$B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-before --report-dir $D/storm-before
$B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-after --report-dir $D/storm-after
$B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-after --report-dir $D/storm-after2
$B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-before --report-dir $D/storm-before2
# Second build of "after" (each due session's output drained before the next runs, see README):
# copied over /tmp/tern-after, then these runs.
for r in after3:after before3:before after4:after before4:before; do n=${r%%:*}; b=${r##*:}
  $B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-$b --report-dir $D/steady-$n; done
for r in after3:after before3:before before4:before after4:after; do n=${r%%:*}; b=${r##*:}
  $B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-$b --report-dir $D/storm-$n; done
