#!/usr/bin/env bash
# Accuracy results of the predictors: `perfcast evaluate` on the shared public data and on the
# local dataset, each into its own folder (report.md, metrics.json, predictions.csv.gz, PNG plots).
# Usage: scripts/make_results.sh [OUT_DIR] (default results/). One core is enough; the shared run
# takes tens of minutes. `spore` is left out by default: its LASSO path costs minutes per fit at
# these sizes; add it with METHODS=flops,gbt,lut,paleo,spore.
set -euo pipefail
OUT="${1:-results}"
METHODS="${METHODS:-flops,gbt,lut,paleo}"
PERFCAST="${PERFCAST:-perfcast}"
mkdir -p "$OUT"
time "$PERFCAST" evaluate --data shared --protocol all --methods "$METHODS" --max-rows 1500 --out "$OUT/shared"
time "$PERFCAST" evaluate --data local --protocol all --methods "$METHODS" --out "$OUT/local"
