#!/usr/bin/env bash
# One stretch of GPU time, prepared: measure the speed targets, then train notebooks 01 and 03's
# verdict pairs at the full profile until the budget is spent (python -m hipcore reproduce-gpu
# goes on from OUT next time). Everything lands under OUT.
#
#   python -m hipcore provenance-env        # here, after committing: prints the two variables
#   env HIPCORE_COMMIT=... HIPCORE_CODE_FINGERPRINT=... OUT=$OUT bash tools/gpu_session.sh 480   # there
#
# Dry run on a CPU at smoke size (what the tests check):
#   DEVICE=cpu PROFILE=smoke IMAGES=256 BIG=256 bash tools/gpu_session.sh 120
set -euo pipefail
BUDGET=${1:?usage: tools/gpu_session.sh BUDGET_SECONDS}
OUT=${OUT:?set OUT, the folder this stretch writes and the next one reads}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-full}
IMAGES=${IMAGES:-20480}          # images per timed training loop
BIG=${BIG:-1024}                 # the large-batch recipe's batch
PY=${PY:-python}
mkdir -p "$OUT"
start=$(date +%s)

# 1. Images/s of small3 classification and MAE: batch 128 against the large batch, fp32 and bf16.
if [ "$DEVICE" != cpu ]; then PRECISIONS="fp32 bf16"; else PRECISIONS="fp32"; fi
$PY - "$OUT" "$IMAGES" "$BIG" $PRECISIONS <<'PY' | tee "$OUT/speed.txt"
import json, sys
from hipcore.argtypes import available_cores
from hipcore.bench.loops import loop_rates
from hipcore.device import machine
out, images, big, precisions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), tuple(sys.argv[4:])
rows = [row for batch in (128, big) for row in
        loop_rates(limit_train=images, threads=min(4, available_cores()), precisions=precisions, batch=batch)]
json.dump({"machine": machine(), "rows": rows}, open(f"{out}/speed.json", "w"), indent=2)
for r in rows:
    print(f"{r['task']:<10} {r['precision']} batch {r['batch']:>5}: {r['examples_per_s']:10.0f} images/s")
PY

# 2. HiP-16 at 224 x 224: steps/s and the share of the card's peak (notebook 05's benchmark).
if [ "$DEVICE" != cpu ]; then
  $PY -m hipcore bench --profile quick --models hip16 perceiver_io --sides 224 --batch 8 --repeats 10 \
      --results-dir "$OUT/bench" | tee "$OUT/bench.txt"
fi

# 3. The verdict pairs, to their plateau, in what is left of the budget (exit 3: go on next time).
left=$(( BUDGET - ($(date +%s) - start) ))
set +e
$PY -m hipcore reproduce-gpu --profile "$PROFILE" --device "$DEVICE" --out "$OUT" --budget-seconds "$left" \
    --parallel 4 --batch "$BIG" | tee "$OUT/reproduce.txt"
code=${PIPESTATUS[0]}
set -e
[ "$code" = 0 ] || [ "$code" = 3 ] || exit "$code"
echo "stretch done in $(( $(date +%s) - start )) s (reproduce-gpu exit $code; 3: run again to go on)"
