#!/usr/bin/env bash
# Runs infrakit-bench of two builds side by side, in one run on one machine: a base revision and
# the working tree. Each scenario runs for the base, then for the working tree, then the next
# scenario, so slow drifts of the machine (other load, CPU frequency) hit both alike. Prints a
# Markdown table of the medians (and p99 where there is one) with the change.
#
# Usage: scripts/bench-compare.sh BASE_REV [infrakit-bench args, e.g. --runs 3]
#
# Builds in release mode, each build in a target directory of its own under
# ~/.cache/infrakit/bench-compare (the base's sources in a detached worktree there). The raw
# results are kept there as base-SCENARIO.json and new-SCENARIO.json.
set -euo pipefail

base=${1:?usage: scripts/bench-compare.sh BASE_REV [infrakit-bench args]}
shift
root=$(git rev-parse --show-toplevel)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/infrakit/bench-compare
rev=$(git -C "$root" rev-parse --short "$base")
tree=$cache/src-$rev
mkdir -p "$cache"

if [ ! -d "$tree" ]; then
    git -C "$root" worktree add --detach "$tree" "$rev" >/dev/null
fi
echo "building the base ($rev) and the working tree ($(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+changes'))" >&2
(cd "$tree" && CARGO_TARGET_DIR=$cache/target-base cargo build --release -q -p infrakit-bench -p infrakit)
(cd "$root" && CARGO_TARGET_DIR=$cache/target-new cargo build --release -q -p infrakit-bench -p infrakit)

for scenario in converge steady heal rollout protocol cli; do
    for side in base new; do
        echo "== $scenario: $side" >&2
        "$cache/target-$side/release/infrakit-bench" --scenario "$scenario" --json "$@" \
            >"$cache/$side-$scenario.json"
    done
done

python3 - "$cache" "$rev" <<'EOF'
import json, sys
cache, rev = sys.argv[1], sys.argv[2]
scenarios = ["converge", "steady", "heal", "rollout", "protocol", "cli"]

def load(side):
    out = []
    for s in scenarios:
        with open(f"{cache}/{side}-{s}.json") as f:
            data = json.load(f)
        out += data["results"]
    return out

def fmt(v, unit):
    if v is None:
        return ""
    return f"{v:,.3g} {unit}" if abs(v) < 1000 else f"{v:,.0f} {unit}"

base = {(m["scenario"], m["name"]): m for m in load("base")}
print(f"| scenario | measurement | base {rev}: median | p99 | this tree: median | p99 | change |")
print("|---|---|---|---|---|---|---|")
for m in load("new"):
    b = base.get((m["scenario"], m["name"]))
    unit, new = m["unit"], m["stats"]
    if b is None:
        print(f"| {m['scenario']} | {m['name']} | | | {fmt(new['median'], unit)} | {fmt(new.get('p99'), unit)} | new |")
        continue
    old = b["stats"]
    change = (new["median"] - old["median"]) / old["median"] * 100 if old["median"] else 0.0
    print(f"| {m['scenario']} | {m['name']} | {fmt(old['median'], unit)} | {fmt(old.get('p99'), unit)} "
          f"| {fmt(new['median'], unit)} | {fmt(new.get('p99'), unit)} | {change:+.1f} % |")
EOF
