#!/usr/bin/env bash
# Two nodes on one machine: a control plane and two agents on 127.0.0.2 and 127.0.0.3.
# Run from the repository root; stop everything with Ctrl-C.
set -euo pipefail
bin=${PODVISOR:-target/release/podvisor}
[ -x "$bin" ] || cargo build --release
dir=${DIR:-$(mktemp -d /tmp/podvisor-two-nodes.XXXX)}
"$bin" server --data-dir "$dir/server" --listen 127.0.0.1:6443 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
for _ in $(seq 50); do [ -f "$dir/server/kubeconfig" ] && break; sleep 0.1; done
for n in 2 3; do
  "$bin" token create node worker-$n --data-dir "$dir/server" > "$dir/worker-$n.token"
  "$bin" agent --server https://127.0.0.1:6443 --ca-file "$dir/server/ca.crt" \
    --token-file "$dir/worker-$n.token" --node-name worker-$n --node-ip 127.0.0.$n \
    --data-dir "$dir/worker-$n" &
  pids+=($!)
done
echo "export KUBECONFIG=$dir/server/kubeconfig"
echo "then: kubectl get nodes; kubectl apply -f examples/web.yaml"
wait
