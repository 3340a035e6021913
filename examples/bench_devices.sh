#!/bin/sh
# train_digits's step time on one POCL device, on one replica through the distribution strategy
# (--devices with one device) and on two POCL devices (data-parallel), run after run, 3 rounds.
# Prints the load average, wall ms per step (training time / steps, from --json) and CPU ms per
# step (user + sys of the whole run, setup included, / steps). BENCHMARKS.md, "Data-parallel".
#   examples/bench_devices.sh [build/train_digits]
export POCL_DEVICES="pthread pthread"
TD=${1:-./build/train_digits}
J=${TMPDIR:-/tmp}/bench_devices.$$.json
for rep in 1 2 3; do
  for model in "--hidden 256,128 --epochs 5" "--hidden 1024,1024 --epochs 1"; do
    for cfg in "--device pocl:cpu:0" "--devices pocl:cpu:0" "--devices pocl:cpu:0,pocl:cpu:1"; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      cpu=$( { /usr/bin/time -f "%U %S" "$TD" $cfg $model --target 0 --json "$J" >/dev/null; } 2>&1 ) || exit 1
      python3 -c "
import json; j = json.load(open('$J')); u, s = map(float, '$cpu'.split())
print('load $load | $model | $cfg | wall %.2f ms/step | cpu %.2f ms/step'
      % (1e3 * j['epochs'][-1]['seconds'] / j['steps'], 1e3 * (u + s) / j['steps']))"
    done
  done
done
rm -f "$J"
