#!/usr/bin/env bash
# The closest proxy for the container image that needs no container engine: the runtime stage's
# Python environment, i.e. a fresh venv + the project's wheel with the torch the image would get.
#   bash tools/measure_runtime_env.sh cuda   # torch==2.13.0 from PyPI: the CUDA build (the image)
#   bash tools/measure_runtime_env.sh cpu    # torch==2.13.0 CPU build (CPU_WHEELS: a find-links
#                                            # folder or URL, default /opt/wheels)
# Prints the download time (cold), the install time from local wheels (warm cache; wall clock and
# CPU seconds, which a busy machine distorts less) and the size of the venv (docs/deployment.md). Works in $WORK (default /tmp/scp-node-measure), deleted after.
set -euo pipefail
variant="${1:?usage: measure_runtime_env.sh cuda|cpu}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${WORK:-/tmp/scp-node-measure}"
python="${PYTHON:-python3}"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# --isolated: no pip.conf and no PIP_* variables (no local find-links, no torch cap), as in the
# image; only the CA bundle is given.
pip_opts=(--isolated --disable-pip-version-check --no-cache-dir --timeout 180)
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  pip_opts+=(--cert /etc/ssl/certs/ca-certificates.crt)
fi
case "$variant" in
  cuda) torch_opts=() ;;  # PyPI's default Linux x86_64 wheel of torch==2.13.0 is the CUDA build
  cpu) torch_opts=(--find-links "${CPU_WHEELS:-/opt/wheels}") ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
# wall, user and system seconds of a command, appended to $work/times
TIMEFORMAT='%R %U %S'
timed() { { time "$@" >/dev/null; } 2>>"$work/times"; }

"$python" -m pip wheel "${pip_opts[@]}" --no-deps -q --wheel-dir "$work/dist" "$root"
wheel="$(ls "$work"/dist/scp_node-*.whl)"
"$python" -m venv "$work/venv"
venv_pip=("$work/venv/bin/python" -m pip)

# cold: every wheel the install needs, downloaded (pip's own HTTP cache is not used: a proxy
# that strips caching headers leaves it empty, so a local wheelhouse stands in for a warm cache)
timed "${venv_pip[@]}" download "${pip_opts[@]}" -q "${torch_opts[@]}" -d "$work/wheels" \
  "torch==2.13.0" "$wheel"
# warm: the same install with every wheel on local disk and no index
timed "${venv_pip[@]}" install "${pip_opts[@]}" -q --no-index --find-links "$work/wheels" \
  "torch==2.13.0" "$wheel"

"$work/venv/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
"$work/venv/bin/scp-node" decoders >/dev/null && echo "scp-node decoders: ok"
{ read -r dl_wall dl_user dl_sys; read -r in_wall in_user in_sys; } <"$work/times"
echo "variant=$variant download: wall ${dl_wall}s (cpu $(echo "$dl_user + $dl_sys" | bc)s)"
echo "variant=$variant warm install: wall ${in_wall}s (cpu $(echo "$in_user + $in_sys" | bc)s)"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "wheels_du=$(du -sh "$work/wheels" | cut -f1) ($(ls "$work/wheels" | wc -l) wheels)"
echo "venv_du=$(du -sh "$work/venv" | cut -f1) venv_bytes=$(du -sb "$work/venv" | cut -f1)"
echo "largest in site-packages (MiB):"
du -sm "$work"/venv/lib/python3*/site-packages/* | sort -rn | head -8
