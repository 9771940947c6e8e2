#!/usr/bin/env bash
# The GPU path, checked on a lent GPU machine in under 8 minutes (docs/gpu-check.md).
#
#   bash scripts/gpu-check.sh --prepare     # HERE (network): build build/gpu-bundle/
#   bash scripts/gpu-check.sh               # THERE (one GPU, no network): set up and check
#   bash scripts/gpu-check.sh --cpu-smoke --python PY   # the same on the CPU, tiny, no fp16
#
# The GPU machine has Python 3.12 with its own torch but no fairseq or Snakemake, and no
# network: --prepare fetches what it lacks (envs/gpu-bundle.txt: cp312 wheels, fairseq's
# sdist) into build/gpu-bundle/, which travels with the repository (device `run` with
# carry: ["build/gpu-bundle"]).  The check then, each phase under a time limit:
#   setup       a virtualenv over the machine's Python (its torch stays visible), the
#               bundle's wheels, fairseq compiled against that torch, this project (-e)
#   workflow    Post-LN and Admin with the demo's recipe at 2-2 and 6-6 through Snakemake, with
#               --device cuda (the GPU resources) and the presets' fp16 settings:
#               data, Admin profiling, training (312 updates each), averaging, decoding,
#               scoring
#   throughput  python -m benchmarks.gpu_throughput --device cuda
#   report      python -m benchmarks.gpu_check report: checks the figures and writes
#               benchmarks/results/<date>-gpu-check-<gpu>.md (and a copy under $OUT)
# It exits non-zero with a message naming the phase and its log when anything fails,
# a time limit included; the report is written either way.
#
# Options:
#   --prepare        build the bundle (here; needs PyPI and the project's .venv)
#   --cpu-smoke      the same sequence on the CPU with tiny sizes and without fp16
#   --python PY      the Python to build the virtualenv from (default: python3); it must
#                    be 3.12 (the bundle's wheels are cp312) and have torch, scikit-learn
#                    and SciPy (the bundle leaves them to the machine)
#   --no-setup       run with PY as it is (it has fairseq, Snakemake and this project):
#                    skips the setup phase, e.g. `--cpu-smoke --no-setup --python
#                    .venv/bin/python` checks the sequence in the development venv
#   --work DIR       where the virtualenv, the runs and the logs go (default:
#                    build/gpu-check, or build/gpu-check-cpu-smoke)
#   --out FILE       the results file (default: benchmarks/results/<date>-gpu-check-<gpu>.md;
#                    with --cpu-smoke: WORK/results.md)
#   --budget S       total seconds for all phases (default 480; 2400 with --cpu-smoke, whose
#                    phase limits are 4 times longer); each phase stops at its own limit
#                    or at the budget, whichever comes first
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIST="$REPO/envs/gpu-bundle.txt"
BUNDLE="${GPU_CHECK_BUNDLE:-$REPO/build/gpu-bundle}"
BUNDLE_LIMIT_MIB=60 # the device tool carries 64 MiB in all, the checkout included
PY_TAG=3.12

die() {
    echo "gpu-check: error: $*" >&2
    exit 1
}
say() { echo "gpu-check: $*" >&2; }

# --------------------------------------------------------------------------- the list

# "name==version<TAB>kind" for each pin of envs/gpu-bundle.txt (or the file given);
# kind: wheel, here (build: here) or there (build: there).
entries() {
    local file=${1:-$LIST} line pin kind
    while IFS= read -r line || [[ -n $line ]]; do
        pin=${line%%#*}
        pin=${pin//[[:space:]]/}
        [[ -z $pin ]] && continue
        [[ $pin == *==* ]] || die "$file: '$pin' is not pinned as name==version"
        kind=wheel
        case $line in
        *"# build: here"*) kind=here ;;
        *"# build: there"*) kind=there ;;
        esac
        printf '%s\t%s\n' "$pin" "$kind"
    done <"$file"
}

pins_of() { entries | awk -F'\t' -v k="$1" '$2 == k {print $1}'; }

# --------------------------------------------------------------------------- --prepare

prepare() {
    local py="${GPU_CHECK_PREPARE_PYTHON:-$REPO/.venv/bin/python}"
    [[ -x $py ]] || die "--prepare needs the project's .venv (make install) or GPU_CHECK_PREPARE_PYTHON"
    local tmp="$BUNDLE.partial"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local -a wheels here there
    mapfile -t wheels < <(pins_of wheel)
    mapfile -t here < <(pins_of here)
    mapfile -t there < <(pins_of there)
    say "downloading ${#wheels[@]} cp${PY_TAG/./} manylinux x86_64 wheels"
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" \
        --python-version "$PY_TAG" --implementation cp --abi "cp${PY_TAG/./}" --abi abi3 \
        --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_26_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux2010_x86_64 --platform manylinux1_x86_64 "${wheels[@]}" ||
        die "pip download of the wheels failed"
    say "building pure-Python wheels of ${here[*]}"
    "$py" -m pip wheel --quiet --no-deps --no-binary=:all: --wheel-dir "$tmp" "${here[@]}" ||
        die "building the wheels of ${here[*]} failed"
    # fairseq's metadata step imports torch: no build isolation (it would fetch a torch).
    say "downloading the sdist of ${there[*]}"
    "$py" -m pip download --quiet --no-deps --no-binary=:all: --no-build-isolation \
        --dest "$tmp" "${there[@]}" || die "pip download of ${there[*]} failed"
    # one file per pin, no more
    local pin name version norm count
    for pin in "${wheels[@]}" "${here[@]}" "${there[@]}"; do
        name=${pin%%==*}
        version=${pin#*==}
        norm=${name//-/_}
        count=$(find "$tmp" -maxdepth 1 -iname "${norm}-${version}[-.]*" | wc -l)
        [[ $count -eq 1 ]] || die "the bundle has $count files for $pin (expected 1)"
    done
    count=$(find "$tmp" -maxdepth 1 -type f | wc -l)
    local expected=$((${#wheels[@]} + ${#here[@]} + ${#there[@]}))
    [[ $count -eq $expected ]] || die "the bundle has $count files for $expected pins"
    cp "$LIST" "$tmp/gpu-bundle.txt"
    (cd "$tmp" && find . -maxdepth 1 -type f ! -name MANIFEST -printf '%f\n' | sort |
        while read -r f; do printf '%s  %s  %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" \
            "$(stat -c %s "$f")" "$f"; done >MANIFEST)
    local bytes
    bytes=$(awk '{s += $2} END {print s}' "$tmp/MANIFEST")
    local mib=$((bytes / 1048576))
    if ((bytes > BUNDLE_LIMIT_MIB * 1048576)); then
        die "the bundle is $mib MiB, over its $BUNDLE_LIMIT_MIB MiB (the device tool carries 64 MiB in all)"
    fi
    rm -rf "$BUNDLE"
    mv "$tmp" "$BUNDLE"
    say "wrote $BUNDLE: $expected files, $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB"
    say "on the GPU machine: device run with carry [\"build/gpu-bundle\"]: bash scripts/gpu-check.sh"
}

left() { echo $((budget - ($(date +%s) - START))); }

# phase NAME LIMIT CMD...: runs CMD under min(LIMIT, budget left) seconds, its output to
# logs/NAME.log (and stderr), and records its time and outcome in phases.tsv.
phase() {
    local name=$1 limit=$2
    shift 2
    local log="$LOGS/$name.log" t0 t1 rc=0 status=ok avail
    limit=$((limit * slower))
    avail=$(left)
    ((avail < limit)) && limit=$avail
    if ((limit < 5)); then
        printf '%s\t0\tnot run: the %s s budget was spent\t%s\n' "$name" "$budget" "$log" >>"$PHASES"
        failed=${failed:-$name}
        say "phase $name not run: the budget of $budget s is spent"
        return 1
    fi
    say "phase $name (limit ${limit} s; log $log)"
    t0=$(date +%s.%N)
    set +e
    # a new bash runs the phase's function: timeout runs programs, not functions, and
    # on expiry signals its whole process group (Snakemake's jobs and fairseq included)
    timeout --kill-after=15 "$limit" bash -euo pipefail -c '"$@"' "$name" "$@" \
        > >(tee "$log" >&2) 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    if ((rc == 124 || rc == 137)); then
        status="timed out after $limit s"
    elif ((rc != 0)); then
        status="failed (exit $rc)"
    fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')" \
        "$status" "$log" >>"$PHASES"
    if [[ $status != ok ]]; then
        failed=${failed:-$name}
        say "phase $name $status; see $log"
        return 1
    fi
}


check_bundle() {
    [[ -f $BUNDLE/MANIFEST ]] ||
        die "no bundle at $BUNDLE: run 'bash scripts/gpu-check.sh --prepare' here, then carry build/gpu-bundle"
    [[ "$(entries "$BUNDLE/gpu-bundle.txt")" == "$(entries)" ]] ||
        die "$BUNDLE holds other pins than envs/gpu-bundle.txt: run --prepare again"
    (cd "$BUNDLE" && awk '{print $1 "  " $3}' MANIFEST | sha256sum --quiet -c -) ||
        die "$BUNDLE is incomplete or damaged (MANIFEST): run --prepare again"
}

# The virtualenv: over the host's Python, whose torch stays visible.  `venv
# --system-site-packages` alone is not enough where that Python is itself a virtualenv
# (as on the GPU machine): the new one would see the base installation, not its
# packages, so the host's site folders are added after the virtualenv's own (a .pth
# file): the bundle's pins win, torch comes from the host.
make_venv() {
    local version
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ $version == "$PY_TAG" ]] ||
        die "$python is Python $version; the bundle's wheels are for $PY_TAG (--python)"
    # what the bundle leaves to the machine: torch, and scikit-learn with SciPy (fairseq
    # imports sklearn when it loads; their wheels, 47 MiB, would not fit the carry limit)
    "$python" -c 'import torch' || die "$python has no torch"
    "$python" -c 'import sklearn, scipy' ||
        die "$python has no scikit-learn or SciPy, which fairseq imports (the bundle leaves them to the machine)"
    rm -rf "$venv"
    "$python" -m venv --system-site-packages --without-pip "$venv"
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    "$python" - "$site/zz_gpu_check_host.pth" <<'EOF'
import site, sys
dirs = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
with open(sys.argv[1], "w") as pth:
    pth.write("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
print("host site folders:", *dirs)
EOF
    local pip_whl
    pip_whl=$(echo "$BUNDLE"/pip-*.whl)
    PIP_CONFIG_FILE=/dev/null "$venv/bin/python" "$pip_whl/pip" --isolated install --quiet \
        --no-index --no-deps --no-compile "$pip_whl"
}

# pip with no configuration of the machine's (files or PIP_* variables), never online
pip_() {
    local verb=$1
    shift
    PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip --isolated "$verb" --no-index \
        --no-deps --disable-pip-version-check "$@"
}

install_wheels() {
    local -a pins
    mapfile -t pins < <(entries | awk -F'\t' '$2 != "there" && $1 !~ /^pip==/ {print $1}')
    pip_ install --quiet --find-links "$BUNDLE" --no-compile "${pins[@]}"
}

# fairseq's C++ and Cython extensions, built against the host's torch.  Without
# CUDA_HOME its setup.py skips the CUDA extensions (non-autoregressive and alignment
# models only; n-gram blocking falls back to Python).  Its seven extensions are built
# side by side (setuptools reads build_ext's `parallel` from DIST_EXTRA_CONFIG), each
# with all cores where torch finds ninja (MAX_JOBS).
build_fairseq() {
    local sdist cfg="$work/build_ext.cfg"
    sdist=$(echo "$BUNDLE"/fairseq_fixed-*.tar.gz)
    printf '[build_ext]\nparallel = %s\n' "$(nproc)" >"$cfg"
    unset CUDA_HOME
    # -g0: no debug information (compiles faster; CFLAGS come last on the command line)
    DIST_EXTRA_CONFIG="$cfg" MAX_JOBS="$(nproc)" CFLAGS=-g0 CXXFLAGS=-g0 \
        pip_ install --no-build-isolation "$sdist"
}

install_project() {
    pip_ install --quiet --no-build-isolation -e "$REPO"
}

versions() {
    (cd "$work" && "$run_py" - "$mode" <<'EOF'
import sys
import fairseq, snakemake, torch
from admin.common.fairseq_command import load_plugin
load_plugin()
from importlib import metadata
print("python", sys.version.split()[0], sys.executable)
names = ("torch", "fairseq-fixed", "snakemake", "numpy", "scikit-learn", "scipy", "hydra-core",
         "sacrebleu")
for name in names:
    print(name, metadata.version(name))
print("cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "cuda", torch.version.cuda)
elif sys.argv[1] == "gpu":
    sys.exit("torch sees no CUDA device: this check needs one GPU")
EOF
    )
}

demo_workflow() {
    local rundir="$work/run" overlay="$work/overlay.yaml" cores
    mkdir -p "$rundir"
    "$run_py" -m benchmarks.gpu_check overlay --mode "$mode" --out "$overlay"
    local -a targets extra=()
    mapfile -t targets < <("$run_py" -m benchmarks.gpu_check targets --mode "$mode")
    cores=$(nproc)
    if [[ $mode == gpu ]]; then
        # one training at a time, so that its per-step times are its own
        extra=(--resources gpu=1 gpus_per_node=1)
    fi
    # the targets first: --resources and --configfile take every word up to the next option
    (cd "$rundir" && "$run_py" -m snakemake "${targets[@]}" --snakefile "$REPO/Snakefile" \
        --cores "$cores" --scheduler greedy --nolock --show-failed-logs "${extra[@]}" \
        --configfile "$REPO/config/config.yaml" "$overlay")
}

throughput() {
    if [[ $mode == gpu ]]; then
        # no round starts later than this: the phase ends within its limit
        local rounds=$(($(left) - 60))
        ((rounds > 150)) && rounds=150
        ((rounds < 20)) && rounds=20
        (cd "$work" && "$run_py" -m benchmarks.gpu_throughput --device cuda \
            --max-seconds "$rounds" --json "$work/throughput.json")
    else
        (cd "$work" && "$run_py" -m benchmarks.gpu_throughput --device cpu --smoke \
            --json "$work/throughput.json")
    fi
}

# --------------------------------------------------------------------------- main

main() {
    mode=gpu
    python=python3
    setup=1
    work=""
    out=""
    budget=""
    while (($#)); do
        case $1 in
        --prepare)
            prepare
            return 0
            ;;
        --cpu-smoke) mode=cpu-smoke ;;
        --python)
            python=${2:?--python needs a value}
            shift
            ;;
        --no-setup) setup=0 ;;
        --work)
            work=${2:?--work needs a value}
            shift
            ;;
        --out)
            out=${2:?--out needs a value}
            shift
            ;;
        --budget)
            budget=${2:?--budget needs a value}
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            return 0
            ;;
        *) die "unknown argument '$1' (see --help)" ;;
        esac
        shift
    done
    if [[ $mode == gpu ]]; then
        work=${work:-$REPO/build/gpu-check}
        budget=${budget:-480}
        slower=1
    else
        # a 2-core machine builds fairseq and trains far slower than a 16-core GPU machine
        work=${work:-$REPO/build/gpu-check-cpu-smoke}
        budget=${budget:-2400}
        slower=4
    fi
    [[ $budget =~ ^[0-9]+$ ]] || die "--budget must be whole seconds, got '$budget'"
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    command -v "$python" >/dev/null || die "Python '$python' not found"
    # absolute, but its symbolic links kept: a virtualenv's python links to its base
    if [[ $python == */* ]]; then
        python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
    else
        python=$(command -v "$python")
    fi
    venv="$work/venv"
    run_py=$python
    ((setup)) && run_py="$venv/bin/python"

    START=$(date +%s)
    PHASES="$work/phases.tsv"
    LOGS="$work/logs"
    rm -rf "$LOGS" "$work/run" "$PHASES"
    mkdir -p "$LOGS"
    printf 'phase\tseconds\tstatus\tlog\n' >"$PHASES"
    failed=""

    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    # what the phases (each in its own bash, see phase) need
    export REPO LIST BUNDLE PY_TAG python venv run_py mode work START budget
    export -f die say entries pins_of left make_venv pip_ install_wheels build_fairseq \
        install_project versions demo_workflow throughput

    if ((setup)); then
        check_bundle
        phase setup-venv 120 make_venv &&
            phase setup-wheels 180 install_wheels &&
            phase setup-fairseq 420 build_fairseq &&
            phase setup-project 120 install_project || true
    fi
    if [[ -z $failed ]]; then
        phase versions 120 versions &&
            phase workflow 420 demo_workflow || true
    fi
    # the throughput table is measured even when a demo run failed
    if [[ -z $failed || $failed == workflow ]]; then
        phase throughput 300 throughput || true
    fi
    report
}

report() {
    if [[ -z $out ]]; then
        if [[ $mode == gpu ]]; then
            out=$("$python" -c 'import sys; sys.path.insert(0, sys.argv[1])
from benchmarks.gpu_check import default_results_path
print(default_results_path())' "$REPO") || out="$REPO/benchmarks/results/$(date +%F)-gpu-check.md"
        else
            out="$work/results.md"
        fi
    fi
    local report_py=$run_py rc=0
    [[ -x $report_py ]] || report_py=$python
    "$report_py" -m benchmarks.gpu_check report --mode "$mode" --work "$work" \
        --seconds "$(($(date +%s) - START))" --out "$out" || rc=$?
    if [[ -n ${OUT:-} && -d ${OUT:-} ]]; then
        # the device tool brings back only what is under $OUT
        cp "$out" "$OUT/" || true
        (cd "$work" && tar -czf "$OUT/gpu-check-logs.tar.gz" --exclude='*.pt' \
            --exclude='data-bin' --ignore-failed-read logs phases.tsv overlay.yaml \
            throughput.json run/logs run/results) || true
    fi
    if [[ -n $failed ]]; then
        die "phase $failed did not succeed (see $LOGS/$failed.log); partial report: $out"
    fi
    ((rc == 0)) || die "the figures failed their checks (listed above); report: $out"
    say "done in $(($(date +%s) - START)) s; report: $out"
}

# the whole file is read before anything runs: editing it meanwhile cannot break a run
main "$@"
