#!/usr/bin/env bash
# The README's "Running on several machines" commands, as written, on two simulated hosts of this machine:
# two network namespaces joined by a veth pair (10.77.0.1: the head, where the learner runs; 10.77.0.2: a
# second node). Prints what each step printed that matters, and the run's outcome. Needs root and iproute2
# (ip netns); leaves no namespace, Ray process or run directory behind.
#
#     sudo bash benchmarks/ray_two_hosts.sh [actorlearner train flags...]   (default: CartPole-v1, 2 actors x 32 envs)
#
# Differences from two real machines: the hosts share one filesystem, so the second node's Ray keeps its
# files in its own --temp-dir, and `ray stop` (which finds Ray's processes by name) stops both nodes at once.
set -euo pipefail
[ -n "${DEBUG:-}" ] && set -x
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (ip netns)" >&2; exit 2; }
command -v ray >/dev/null || { echo "no ray command here: activate the environment with the ray extra" >&2; exit 2; }
export RAY_USAGE_STATS_ENABLED=0
A="ip netns exec al-head"; B="ip netns exec al-node"
run_dir="$(mktemp -d)/run"

cleanup() {
    $A ray stop --force >/dev/null 2>&1 || true
    ip netns del al-head 2>/dev/null || true
    ip netns del al-node 2>/dev/null || true
    rm -rf "$(dirname "$run_dir")" /tmp/ray-al-node
}
trap cleanup EXIT
cleanup

ip netns add al-head
ip netns add al-node
ip link add al-veth0 type veth peer name al-veth1
ip link set al-veth0 netns al-head
ip link set al-veth1 netns al-node
$A ip addr add 10.77.0.1/24 dev al-veth0
$B ip addr add 10.77.0.2/24 dev al-veth1
for ns in al-head al-node; do
    ip netns exec $ns ip link set lo up
done
$A ip link set al-veth0 up
$B ip link set al-veth1 up
$A ip route add default dev al-veth0  # Ray finds its node's address by routing towards a public one
$B ip route add default dev al-veth1

echo "+ (head) ray start --head --port=6379 --num-cpus=1"
$A ray start --head --port=6379 --num-cpus=1 2>&1 | grep -E "Local node IP|Ray runtime started" || true
echo "+ (head) ray get-auth-token"
token="$($A ray get-auth-token 2>/dev/null | tail -1)"
echo "(a ${#token}-character token)"
echo "+ (node) RAY_AUTH_MODE=token RAY_AUTH_TOKEN=... ray start --address=10.77.0.1:6379 --num-cpus=1"
RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token" $B ray start --address=10.77.0.1:6379 --num-cpus=1 \
    --temp-dir=/tmp/ray-al-node 2>&1 | grep -E "Local node IP|Ray runtime started|Error" || true
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--env CartPole-v1 --num-actors 2 --envs-per-actor 32)
echo "+ (head) actorlearner train --backend ray --ray-address auto ${flags[*]}"
$A python -m actorlearner train --backend ray --ray-address auto "${flags[@]}" --run-dir "$run_dir" 2>&1 \
    | grep -Ev "^\[ " | cut -c1-300
status=${PIPESTATUS[0]}
echo "exit status $status"
exit "$status"
