#!/usr/bin/env bash
# One short, prepared GPU session (issue 15, goal 5): run it once on a machine with CUDA, from the
# repository root, and copy the figures it prints into docs/performance.md.
#
#   bash bench/gpu_session.sh            # results in $OUT (the device tool's folder) or /tmp/gpu-session
#
# Steps, each with its own time limit so that the whole run stays under ~7 minutes:
#   1. the GPU and torch (nvidia-smi, torch.cuda);
#   2. bench/gpu_inference.py: eager vs torch.compile, fp32 vs bf16, CUDA-event timing; then
#      bench/device_agreement.py: the same phantoms on CPU and GPU give the same scores;
#   3. bench/bench_analysis.py on the 200-slice series: peak RSS and the decode/canonical/model split
#      with the model on the GPU (model.device = auto);
#   4. bench/bench_pipeline.py: the end-to-end time from study completion to the SR in a real
#      Orthanc (needs /usr/sbin/Orthanc and /usr/bin/storescu; skipped, and said so, without them).
# A step that fails or runs out of time is reported and the next one runs.
set -u
OUT_DIR="${OUT:-/tmp/gpu-session}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TCP_NODELAY=1
PY="${PYTHON:-python}"

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo "=== $name (limit ${limit} s)"
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT_DIR/$name.txt" 2>"$OUT_DIR/$name.err"
  local rc=$?
  cat "$OUT_DIR/$name.txt"
  [ "$rc" -eq 0 ] || { echo "--- $name: exit $rc"; tail -n 20 "$OUT_DIR/$name.err"; }
  echo "--- $name took $((SECONDS - started)) s"
}

step gpu 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  '"$PY"' -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda,
  \"available\", torch.cuda.is_available())"'
step gpu_inference 150 "$PY" bench/gpu_inference.py --repeats 30
step device_agreement 90 "$PY" bench/device_agreement.py --studies 12 --amp
step bench_analysis 90 "$PY" bench/bench_analysis.py --rounds 1 --cases series \
  --work "$OUT_DIR/mem"
if [ -x /usr/sbin/Orthanc ] && [ -x /usr/bin/storescu ]; then
  step bench_pipeline 180 "$PY" bench/bench_pipeline.py --repeats 5 --senders 4 \
    --work "$OUT_DIR/e2e"
else
  echo "=== bench_pipeline skipped: /usr/sbin/Orthanc or /usr/bin/storescu is not installed here"
fi
rm -rf "$OUT_DIR/mem" "$OUT_DIR/e2e"  # phantom data: not worth copying back
