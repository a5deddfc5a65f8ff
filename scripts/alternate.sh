#!/usr/bin/env bash
# Times this tree against an earlier revision on the user-level workloads (W1 record,
# W1 replay, W2 replay_step, W3 step, W4 chain), alternating the two builds round by
# round in one process, and prints the median ratio new/old of each.
#
#   scripts/alternate.sh REV [ROUNDS] [w1 w1r w2 w3 w4]
#
# The ratios hold for the processor they were measured on; the script names it.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/alternate.sh REV [ROUNDS] [workloads]}
shift
out=target/alternate
rm -rf "$out/old" "$out/new"
mkdir -p "$out/old" "$out/new"
git archive "$rev" src Cargo.toml README.md docs | tar -x -C "$out/old"
cp -r src Cargo.toml README.md docs "$out/new/"
for side in old new; do
  # Each copy is a library named after its side, without benches or dev-dependencies.
  sed -i -e "s/^name = \"tapegrad\"/name = \"tapegrad_$side\"/" \
    -e '/^\[\[bench\]\]/,+2d' -e '/^\[dev-dependencies\]/,/^\[/{/^\[dev-dependencies\]/!{/^\[/!d}}' \
    "$out/$side/Cargo.toml"
done
cargo build --release --quiet --manifest-path scripts/alternate/Cargo.toml \
  --target-dir "$out/target"
grep -m1 "model name" /proc/cpuinfo || true
echo "flags: $(grep -m1 -o -w -e avx2 -e avx512f /proc/cpuinfo | sort -u | tr '\n' ' ')"
"$out/target/release/alternate" "$@"
