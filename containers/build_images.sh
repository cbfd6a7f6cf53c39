#!/usr/bin/env bash
# Builds LabBatch's local images with no registry (`make images`):
#   labbatch-base:bookworm   mmdebstrap minbase + python3 + ca-certificates, docker import
#   labbatch-runner:local    containers/runner/Dockerfile FROM that base (its tree is what jobs mount)
#   labbatch-demo:local      containers/Dockerfile FROM that base (demo tools, no runner)
#   labbatch-bwa:local       mmdebstrap minbase + bwa + samtools: a stand-in for a biocontainers
#                            image, with no Python and no LabBatch code
#   labbatch-salmon:local    mmdebstrap minbase + salmon (Debian 1.10.1): the same, for
#                            quay.io/biocontainers/salmon (labs/genomics-core.yaml's salmon-quant)
#   labbatch-star:local      mmdebstrap minbase + rna-star (Debian STAR 2.7.10b): the same, for
#                            quay.io/biocontainers/star (genomics-core's star-align)
#   labbatch-snakemake:local containers/snakemake/Dockerfile FROM the base: a stand-in for
#                            snakemake/snakemake, the image Snakemake's TES tasks run in
#
# No registry answers here and HTTPS from inside a container is not trusted, so bases come from
# Debian's packages and every wheel is fetched on the host into the build context; the builds
# run with --network=none so that nothing can slip in from the network.
#
# Cached: each image carries the hash of its inputs in the label org.labbatch.inputs and is
# skipped when that hash is unchanged (a base's hash covers its recipe and the apt sources; a
# built image's covers its context, wheels and base image id). Bootstrap tarballs and wheels
# are kept under $LABBATCH_IMAGE_CACHE (default .cache/images, gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${LABBATCH_IMAGE_CACHE:-$ROOT/.cache/images}
PYTHON=${PYTHON:-python3}          # a Python 3.11 with pip, for `pip download` / `pip wheel`
DOCKER=${DOCKER:-docker}
LABEL=org.labbatch.inputs
PIP_VERSION=25.0.1                 # only runs the install inside the builds; not left in images
SUITE=bookworm
BASE_TAG=labbatch-base:bookworm
RUNNER_TAG=labbatch-runner:local
DEMO_TAG=labbatch-demo:local
BWA_TAG=labbatch-bwa:local
SALMON_TAG=labbatch-salmon:local
STAR_TAG=labbatch-star:local
SNAKEMAKE_TAG=labbatch-snakemake:local
# Minbase without documentation. mmdebstrap still brings usrmerge, and with it the whole of
# perl (50 MB; perl-base, which dpkg needs, stays): the tree is merged-/usr already and
# usr-is-merged says so, so they go.
MMDEBSTRAP_OPTIONS=(
    --variant=minbase
    --customize-hook='chroot "$1" apt-get purge --quiet --yes usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 >/dev/null'
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
)
BASE_PACKAGES=usr-is-merged,python3,ca-certificates
BWA_PACKAGES=usr-is-merged,bwa,samtools
SALMON_PACKAGES=usr-is-merged,salmon
STAR_PACKAGES=usr-is-merged,rna-star
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

"$DOCKER" info >/dev/null 2>&1 || die "no container engine answers ('$DOCKER info' failed)"
mkdir -p "$CACHE"

# shellcheck source=apt_sources.sh
. "$ROOT/containers/apt_sources.sh"
SOURCES=$(apt_sources)

# hash_of WORD... : words are literal strings, or files/directories (contents, sorted, no caches).
hash_of() {
    local word
    for word in "$@"; do
        if [ -d "$word" ]; then
            (cd "$word" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
                | xargs -0 -r sha256sum)
        elif [ -f "$word" ]; then
            printf 'file %s\n' "$(basename "$word")"; cat "$word"
        else
            printf 'word %s\n' "$word"
        fi
    done | sha256sum | cut -c1-16
}

image_label() { "$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { "$DOCKER" image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
# Images a rebuild untagged; removed at the end, derived ones first, if nothing still uses them.
REPLACED=()
remember_replaced() { local old; old=$(image_id "$1"); if [ -n "$old" ]; then REPLACED=("$old" "${REPLACED[@]}"); fi; }

debootstrap_hash() { hash_of "$SUITE" "$1" "${MMDEBSTRAP_OPTIONS[@]}" "$SOURCES" "$IMAGE_PATH"; }

# bootstrap_tarball TAG PACKAGES: mmdebstrap the tarball TAG is imported from, into the cache,
# unless the image or the tarball is there already. Safe to run several at once (own temp dirs).
bootstrap_tarball() {
    local tag=$1 packages=$2 hash tarball started=$SECONDS
    hash=$(debootstrap_hash "$packages")
    tarball=$CACHE/${tag%%:*}-$hash.tar
    if [ "$(image_label "$tag")" = "$hash" ] || [ -s "$tarball" ]; then return; fi
    say "$tag: mmdebstrap $SUITE with $packages (about 1-2 min)"
    # The output's name ending in .tar is what makes mmdebstrap write a tarball.
    mmdebstrap --quiet "${MMDEBSTRAP_OPTIONS[@]}" --include="$packages" "$SUITE" "${tarball%.tar}.part.tar" "$SOURCES"
    mv "${tarball%.tar}.part.tar" "$tarball"
    # Older tarballs of the same image are dead weight.
    find "$CACHE" -maxdepth 1 -name "${tag%%:*}-*.tar" ! -name "*.part.tar" ! -name "$(basename "$tarball")" -delete
    say "$tag: mmdebstrap done in $((SECONDS - started)) s"
}

# debootstrap_image TAG PACKAGES: import the tarball (bootstrapping it first if need be).
debootstrap_image() {
    local tag=$1 packages=$2 hash
    hash=$(debootstrap_hash "$packages")
    if [ "$(image_label "$tag")" = "$hash" ]; then say "$tag is up to date ($hash)"; return; fi
    bootstrap_tarball "$tag" "$packages"
    say "$tag: docker import"
    remember_replaced "$tag"
    "$DOCKER" import --change "LABEL $LABEL=$hash" --change "ENV PATH=$IMAGE_PATH" \
        --change 'CMD ["/bin/sh"]' "$CACHE/${tag%%:*}-$hash.tar" "$tag" >/dev/null
}

# wheelhouse DIR REQUIREMENTS...: every pinned wheel for cp311 manylinux, fetched on the host. A
# pin with no such wheel on PyPI (mappy) is built here, on the host, which is Debian bookworm
# like the images (same glibc); pip is added so that the build can install without apt.
wheelhouse() {
    local dir=$1 requirements line; shift
    if [ -f "$dir/.complete" ]; then return; fi
    rm -rf "$dir"; mkdir -p "$dir"
    local download=("$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir"
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
        --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64
        --platform linux_x86_64 --platform any)
    for requirements in "$@"; do
        say "wheels for $(basename "$(dirname "$requirements")")/$(basename "$requirements") -> $dir"
        while read -r line; do
            line=${line%%#*}; line=$(echo "$line" | xargs)
            case $line in ''|-r*) continue ;; esac
            if ! "${download[@]}" "$line" 2>/dev/null; then
                say "  $line: no wheel on the index, building it on the host"
                "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "$line"
            fi
        done < "$requirements"
    done
    "${download[@]}" "pip==$PIP_VERSION" 2>/dev/null
    touch "$dir/.complete"
}

# build_image TAG NAME WHEELS SOURCE... : stage a context (sources + wheels) and build it offline.
build_image() {
    local tag=$1 name=$2 wheels=$3; shift 3
    local context=$CACHE/context-$name hash base_id
    base_id=$(image_id "$BASE_TAG")
    hash=$(hash_of "$base_id" "$wheels" "$@")
    if [ "$(image_label "$tag")" = "$hash" ]; then say "$tag is up to date ($hash)"; return; fi
    rm -rf "$context"; mkdir -p "$context"
    local source
    for source in "$@"; do cp -aL "$source" "$context/"; done
    find "$context" -name __pycache__ -prune -exec rm -rf {} +
    cp -a "$wheels"/*.whl "$context/"  # beside the Dockerfile: COPY *.whl needs no directory
    say "$tag: docker build (offline, FROM $BASE_TAG)"
    remember_replaced "$tag"
    local started=$SECONDS
    if ! "$DOCKER" build --quiet --force-rm --network=none --build-arg "BASE_IMAGE=$BASE_TAG" \
            --label "$LABEL=$hash" -t "$tag" "$context" >"$CACHE/build-$name.log" 2>&1; then
        tail -n 30 "$CACHE/build-$name.log" >&2
        die "docker build of $tag failed (log: $CACHE/build-$name.log)"
    fi
    say "$tag built in $((SECONDS - started)) s"
}

started=$SECONDS
DEBOOTSTRAPPED=("$BASE_TAG=$BASE_PACKAGES" "$BWA_TAG=$BWA_PACKAGES" "$SALMON_TAG=$SALMON_PACKAGES"
    "$STAR_TAG=$STAR_PACKAGES")
# The bootstraps wait mostly on the mirror and dpkg, not the CPU: side by side, four take little
# longer than one. Then the imports, one at a time.
pids=()
for spec in "${DEBOOTSTRAPPED[@]}"; do
    bootstrap_tarball "${spec%%=*}" "${spec#*=}" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || die "an mmdebstrap failed (its messages are above)"; done
for spec in "${DEBOOTSTRAPPED[@]}"; do debootstrap_image "${spec%%=*}" "${spec#*=}"; done
# Stand-ins for tool images with no Python at all: if Debian ever pulled one in, the tests
# that prove the mounted runner needs nothing from the tool image would prove nothing.
for tag in "$BWA_TAG" "$SALMON_TAG" "$STAR_TAG"; do
    if "$DOCKER" run --rm --network=none "$tag" sh -c 'ls /usr/bin/python* /usr/local/bin/python* 2>/dev/null'; then
        die "$tag contains a Python; it must not"
    fi
done

RUNNER_REQUIREMENTS=$ROOT/containers/runner/requirements.txt
DEMO_REQUIREMENTS=$ROOT/containers/requirements.txt
# The runner tree's `aws` (Nextflow's cliPath) has its own pins, installed apart from the runner's.
AWSCLI_REQUIREMENTS=$ROOT/containers/runner/awscli-requirements.txt
RUNNER_WHEELS=$CACHE/wheels-runner-$(hash_of "$RUNNER_REQUIREMENTS" "$AWSCLI_REQUIREMENTS" "$PIP_VERSION")
DEMO_WHEELS=$CACHE/wheels-demo-$(hash_of "$DEMO_REQUIREMENTS" "$PIP_VERSION")
wheelhouse "$RUNNER_WHEELS" "$RUNNER_REQUIREMENTS" "$AWSCLI_REQUIREMENTS"
wheelhouse "$DEMO_WHEELS" "$DEMO_REQUIREMENTS"
SNAKEMAKE_REQUIREMENTS=$ROOT/containers/snakemake/requirements.txt
SNAKEMAKE_WHEELS=$CACHE/wheels-snakemake-$(hash_of "$SNAKEMAKE_REQUIREMENTS" "$PIP_VERSION")
wheelhouse "$SNAKEMAKE_WHEELS" "$SNAKEMAKE_REQUIREMENTS"

build_image "$RUNNER_TAG" runner "$RUNNER_WHEELS" \
    "$ROOT/containers/runner/Dockerfile" "$ROOT/containers/runner/requirements.txt" \
    "$AWSCLI_REQUIREMENTS" "$ROOT/containers/runner/aws" "$ROOT/containers/runner/aws.py" \
    "$ROOT/containers/runner/labbatch_runner" "$ROOT/labbatch_contract"
# The demo context holds only what its Dockerfile copies (CDK's asset is all of containers/).
build_image "$DEMO_TAG" demo "$DEMO_WHEELS" \
    "$ROOT/containers/Dockerfile" "$ROOT/containers/requirements.txt" "$ROOT/containers/pipelines"
build_image "$SNAKEMAKE_TAG" snakemake "$SNAKEMAKE_WHEELS" \
    "$ROOT/containers/snakemake/Dockerfile" "$ROOT/containers/snakemake/requirements.txt"

for old in "${REPLACED[@]}"; do
    [ "$(image_id "$old")" = "$old" ] || continue
    "$DOCKER" image inspect -f '{{len .RepoTags}}' "$old" | grep -qx 0 && "$DOCKER" rmi "$old" >/dev/null 2>&1 || true
done
say "done in $((SECONDS - started)) s: $BASE_TAG $RUNNER_TAG $DEMO_TAG $BWA_TAG $SALMON_TAG $STAR_TAG $SNAKEMAKE_TAG"
