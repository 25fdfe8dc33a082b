#!/usr/bin/env bash
# Reproduces the committed turn-taking evaluation: builds the full labeled set (espeak-ng voices,
# asterisk prompts, pink noise at 20/10/5 dB; deterministic) and scores every detector with both
# VAD backends. Usage: scripts/turn-eval.sh   (report goes to perf-reports/<date>-turn-eval/)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p tern-turn-eval
set_dir=target/turn-eval-full
[ -f "$set_dir/labels.json" ] || python3 tools/turn-eval/make_set.py "$set_dir" --size full
out="perf-reports/$(date +%F)-turn-eval"
mkdir -p "$out"
{
  echo "# Turn-taking evaluation"
  echo
  echo "Command: \`scripts/turn-eval.sh\` (= \`python3 tools/turn-eval/make_set.py $set_dir --size full\`, then"
  echo "\`tern-turn-eval --set $set_dir --vad earshot,silero\`). Machine: $(nproc) cores, $(uname -sr);"
  echo "commit $(git rev-parse --short HEAD). Virtual time: every clip runs frame by frame through the"
  echo "same VAD, turn detector, barge-in guard and echo guard code a session runs."
  echo
  ./target/release/tern-turn-eval --set "$set_dir" --vad earshot,silero
} >"$out/README.md"
cat "$out/README.md"
