#!/usr/bin/env bash
# Accuracy results of the predictors, written to docs/results.md (and the full reports with their
# metrics.json, predictions and PNG plots to OUT_DIR, default results/):
#   0. the shipped devices trained again into OUT_DIR/shipped, timed (identical to the committed files);
#   1. HW-NAS-Bench NB201 on CIFAR-10, protocol a (train sizes 100 / 900 / all) for the classic
#      methods, and at 900 training networks (the size the goals name) for the graph-learning
#      methods (G_METHODS: each fit trains a network, times 11 with the conformal folds; the
#      multi-device methods need other devices, so protocol b is theirs);
#   2. the whole shared data, protocol b (a new device from k = 5, 10, 20 samples, with `adapt`), for
#      the methods that fit in seconds (B_METHODS: SPORE's cross-validated LASSO and Halide's network
#      take minutes per fit, times 9 draws per device), and protocol c without the lookup table
#      (L_METHODS: one column per operator and shape, thousands over three spaces);
#   3. the multi-device few-shot methods on protocol b (FLOPs as the single-device reference);
#   4. the local dataset (data/local-ort-cpu, all 3,315 measurements), protocols a and c (leave one
#      space out), L_METHODS and perfcast's own mix (LOCAL_METHODS);
#   5. the in-distribution reference of the few-shot goals: flops and gbt fitted on every training
#      network of each public device setting (protocol a, the same test networks as protocol b),
#      the measurement noise of HW-NAS-Bench's devices (scripts/label_noise.py), and what limits
#      their goals (scripts/fewshot_ceiling.py: adapt at more samples against a full fit, the
#      features against an exact cell encoding), and how repeatable the local dataset's peak memory
#      is (scripts/memory_repeat.py: held-out networks measured again, beside gbt's error on them);
#   6. this machine calibrated, then 26 networks of unseen families measured and predicted
#      (benchmarks/calibrate_unseen.py; it measures, so keep the machine otherwise quiet).
# Usage: scripts/make_results.sh [OUT_DIR]. One core is enough; it takes a few hours on one core.
# METHODS, B_METHODS, L_METHODS, LOCAL_METHODS and G_METHODS override the lists of methods.
set -euo pipefail
OUT="${1:-results}"
METHODS="${METHODS:-flops,paleo,lut,gbt,spore,kernel,opwise,halide}"
B_METHODS="${B_METHODS:-flops,paleo,lut,gbt,kernel,opwise}"
L_METHODS="${L_METHODS:-flops,paleo,gbt,kernel,opwise}"
LOCAL_METHODS="${LOCAL_METHODS:-$L_METHODS,mix}"
G_METHODS="${G_METHODS:-cs230,lstm_gbm,brpnas,tpu_cost,perfsage}"
PERFCAST="${PERFCAST:-perfcast}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
"$PYTHON" "$(dirname "$0")/train_shipped.py" --out "$OUT/shipped" --timings "$OUT/training.json"
"$PERFCAST" evaluate --data shared --sources hwnasbench_nb201 --where dataset=cifar10 --protocol a \
    --max-rows 4000 --methods "$METHODS" --out "$OUT/nb201-cifar10"
"$PERFCAST" evaluate --data shared --sources hwnasbench_nb201 --where dataset=cifar10 --protocol a \
    --max-rows 4000 --train-sizes 900 --methods "$G_METHODS" --out "$OUT/nb201-graph"
"$PERFCAST" evaluate --data shared --protocol b --max-rows 1500 --methods "$B_METHODS" --out "$OUT/shared"
"$PERFCAST" evaluate --data shared --protocol c --max-rows 1500 --methods "$L_METHODS" --out "$OUT/shared-c"
"$PERFCAST" evaluate --data shared --protocol b --max-rows 1500 --methods flops \
    --fewshot help,nnlqp,hwfeat,fewshot --out "$OUT/fewshot"
"$PERFCAST" evaluate --data local --protocol a,c --max-rows 4000 --methods "$LOCAL_METHODS" --out "$OUT/local"
"$PERFCAST" evaluate --data shared --protocol a --max-rows 1500 --methods flops,gbt --train-sizes 100,all \
    --out "$OUT/shared-a"
"$PYTHON" "$(dirname "$0")/label_noise.py" > "$OUT/label-noise.md"
"$PYTHON" "$(dirname "$0")/fewshot_ceiling.py" > "$OUT/ceiling.md"
"$PYTHON" "$(dirname "$0")/memory_repeat.py" > "$OUT/memory-repeat.md"
"$PYTHON" "$(dirname "$0")/../benchmarks/calibrate_unseen.py" > "$OUT/unseen.txt"
"$PYTHON" "$(dirname "$0")/assemble_results.py" "$OUT"
