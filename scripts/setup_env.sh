#!/usr/bin/env bash
# Creates the virtual environment and installs the suite into it. Idempotent: a
# second run with nothing changed only checks a stamp and returns in seconds.
#
# `setup_env.sh --check` installs nothing: exit status 0 when the environment is up to date.
#
# Environment (the Makefile passes its variables of the same names):
#   VENV          where the environment lives                      (.venv)
#   PYTHON        interpreter that creates it                      (python3)
#   TORCH_SPEC    pip requirement for torch                        (torch==2.13.0)
#   TORCH_INDEX   extra index for torch, e.g. a CUDA wheel index   (none)
#   EXTRAS        extras of involution_ops to install              (mm,test,cuda12)
#   WHEEL_CACHE   where the mmcv wheel built from source is kept   (~/.cache/involution_ops/wheels)
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
EXTRAS=${EXTRAS:-mm,test,cuda12}
WHEEL_CACHE=${WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/involution_ops/wheels}
MMCV_VERSION=2.1.0

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

cd "$(dirname "$0")/.."
stamp_file="$VENV/.involution_ops-setup"
stamp=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)-"$TORCH_SPEC"-"$TORCH_INDEX"-"$EXTRAS"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" && -x "$VENV/bin/python" ]]; then
    [[ ${1:-} == --check ]] || say "environment $VENV is up to date (delete $stamp_file to force a reinstall)"
    exit 0
fi
# --check: only report (exit status 1) that a setup would install something; change nothing
[[ ${1:-} == --check ]] && exit 1

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found: install Python >= 3.10 or pass PYTHON=/path/to/python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$("$PYTHON" --version) is too old: the suite needs Python >= 3.10 (pass PYTHON=...)"
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# mmcv 2.1.0's setup.py and mmengine's `mmdet::` config inheritance import
# pkg_resources, which setuptools 81 removed; torch 2.13 needs setuptools >= 77.
say "installing build tools"
"${pip[@]}" install -q "setuptools>=77,<81" wheel ninja numpy

say "installing $TORCH_SPEC${TORCH_INDEX:+ from $TORCH_INDEX}"
"${pip[@]}" install -q "$TORCH_SPEC" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"}

find_links=()
if [[ ",$EXTRAS," == *,mm,* ]]; then
    # mmcv publishes no wheel for current torch on PyPI: build it once per torch
    # (and CUDA) version, against the installed torch, and keep the wheel.
    read -r torch_tag with_cuda < <("$VENV/bin/python" -c \
        'import torch; print(torch.__version__, int(torch.cuda.is_available()))')
    py_tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cuda_suffix=""
    [[ $with_cuda == 1 ]] && cuda_suffix="-cuda"
    cache_dir="$WHEEL_CACHE/mmcv-$MMCV_VERSION-torch-$torch_tag-$py_tag$cuda_suffix"
    if ! compgen -G "$cache_dir/mmcv-$MMCV_VERSION-*.whl" >/dev/null; then
        jobs=${MAX_JOBS:-$(nproc)}
        say "building mmcv $MMCV_VERSION from source for torch $torch_tag with $jobs jobs (once per machine; 15-30 min on 2 cores)"
        build_dir=$(mktemp -d)
        trap 'rm -rf "$build_dir"' EXIT
        # the source archive is kept beside the wheels: a rebuild for another torch downloads nothing
        sdist="$WHEEL_CACHE/src/mmcv-$MMCV_VERSION.tar.gz"
        if [[ ! -s "$sdist" ]]; then
            "${pip[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build_dir/src"
            mkdir -p "$WHEEL_CACHE/src"
            mv "$build_dir"/src/mmcv-*.tar.gz "$sdist.part" && mv "$sdist.part" "$sdist"
        fi
        build_env=()
        if command -v ccache >/dev/null; then
            # torch's extension builder compiles through ccache by itself when it is on PATH; pip
            # unpacks into a random folder, so make paths relative to $build_dir for cache hits
            mkdir -p "$build_dir/tmp"
            build_env=(TMPDIR="$build_dir/tmp" CCACHE_BASEDIR="$build_dir" CCACHE_NOHASHDIR=1)
            say "compiling through ccache ($(ccache --version | head -n1))"
        fi
        started=$SECONDS
        env "${build_env[@]}" MMCV_WITH_OPS=1 FORCE_CUDA=$with_cuda MAX_JOBS=$jobs \
            "${pip[@]}" wheel --no-build-isolation --no-deps -w "$build_dir/wheel" "$sdist" \
            > "$build_dir/build.log" 2>&1 \
            || { tail -n 40 "$build_dir/build.log" >&2; die "building mmcv failed (log above; if the source archive is damaged, delete $sdist)"; }
        elapsed=$((SECONDS - started))
        mkdir -p "$cache_dir"
        mv "$build_dir"/wheel/mmcv-*.whl "$cache_dir/"
        say "built mmcv in $((elapsed / 60)) min $((elapsed % 60)) s; cached the wheel in $cache_dir"
    else
        say "using the cached mmcv wheel in $cache_dir"
    fi
    find_links=(--find-links "$cache_dir")
fi

say "installing involution_ops[$EXTRAS] with pinned versions"
"${pip[@]}" install -q "${find_links[@]}" -e ".[$EXTRAS]"

echo "$stamp" > "$stamp_file"
say "done: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
