#!/usr/bin/env bash
# Rebuilds the ignored folders that carry packages to the GPU machine (consumed there by device_env.sh), one folder
# per device call, as many as the pieces need (each call carries at most 64 MiB, the tree and .gl included: two calls
# with a ~20 MB tree, three once it grows past ~22 MB, as with today's 28 MiB; checked on the H100 2026-11-24):
#   .device/callK  in this order, split where a call is full: policy-site.tar.xz (lerobot 0.6.1, transformers 5.5.4),
#                  small wheels, openpi-site.tar.xz, sim-site.tar.xz (ManiSkill, SAPIEN, gymnasium), av-site.tar.xz
#                  (PyAV, which lerobot.datasets imports); a split tarball's sha256 travels with its first part
#   .gl            Debian amd64 Vulkan/EGL/GL loader .debs for SAPIEN's headless rendering
# The pieces are built in .device/build (not carried). Chained calls while the machine stays warm bring them all
# (`run` with carry [".gl", ".device/call1"], then [".gl", ".device/call2"], ...; the script prints how many);
# device_env.sh joins the parts. Rebuild the call folders after the tree grows (the pieces themselves are kept).
# The GPU machine already has torch 2.11, jax 0.11.2 (flax, orbax, chex, einops), numpy, pandas, pyarrow, xxhash,
# huggingface-hub, httpx, aiohttp, opencv-python-headless (see the device tool's KINDS.md package list): not carried.
# Idempotent: a piece whose output exists is skipped; delete it to rebuild. Needs network (PyPI, Debian mirrors).
# Usage: benchmarks/trained/pack_device.sh      (takes ~10-20 min: xz -9e)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PACK=$ROOT/../shared/tools/pack-device-site.sh
tmp=$(mktemp -d /tmp/pack-device.XXXXXX); trap 'rm -rf "$tmp"' EXIT
# The shared script's `python3 -m pip install --target` checks Requires-Python against the running interpreter
# (lerobot 0.6.1 wants >=3.12): put a python3 that is 3.12 first on PATH (PYTHON312=/path/to/python3.12 to choose).
PY=""
for cand in "${PYTHON312:-}" python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12; do
  [ -n "$cand" ] || continue
  PY=$("$cand" -c "import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)" 2>/dev/null) && break
  PY=""
done
[ -n "$PY" ] || { echo "pack_device: need Python 3.12 with pip (set PYTHON312=/path/to/python3.12)" >&2; exit 2; }
mkdir "$tmp/bin"; ln -s "$PY" "$tmp/bin/python3"; export PATH=$tmp/bin:$PATH
# cp312 binaries for the device's Python 3.12 whatever this machine's python3 is
P=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
B=.device/build
mkdir -p $B .gl

# 1. sim-site: the shared pack, pruned further (split where a call is full, below)
if [ -f $B/sim-site.tar.xz ]; then echo "sim-site: exists, skipped"; else
  "$PACK" "$tmp/sim" sim
  mkdir "$tmp/sim/site"; tar -xJf "$tmp/sim/sim-site.tar.xz" -C "$tmp/sim/site"; rm "$tmp/sim/sim-site.tar.xz"
  # OIDN's CUDA device is only for SAPIEN's optional ray-tracing denoiser, which bench never turns on; the OIDN core
  # stays (sapien/_oidn_tricks.py loads it at import). maniskill2-scene-2.glb is referenced by no file of mani_skill
  # 3.0.1 (the table scene uses scene_builder/table/assets/table.glb). Panda's realsense d415.stl stays: panda_v3.urdf
  # (panda_wristcam) needs it.
  find "$tmp/sim/site/sapien" \( -name '*OpenImageDenoise_device_cuda*' -o -iname '*oidn*cuda*' \) -type f -print -delete
  rm -fv "$tmp/sim/site/mani_skill/assets/maniskill2-scene-2.glb"
  (cd "$tmp/sim/site" && tar -cf - . | xz -9e -T0 > "$tmp/sim/sim-site.tar.xz")
  mv "$tmp/sim/sim-site.tar.xz" $B/
fi

# 2a. policy-site: lerobot 0.6.1 with transformers 5.5.4 (the device's transformers 5.17 breaks lerobot's pi0/pi05)
if [ -f $B/policy-site.tar.xz ]; then echo "policy-site: exists, skipped"; else
  "$PACK" "$tmp/policy" policy
  mv "$tmp/policy/policy-site.tar.xz" $B/
fi

# 2b. openpi-site: openpi (rpent-openpi repackages it unchanged; its pins drag old jax/torch, hence no deps) plus the
# small packages openpi's model/config/transforms modules import that the device lacks: tyro and its deps (openpi.
# training.config), openpi-client (openpi.transforms), augmax (openpi.models.model), beartype + jaxtyping 0.2.36
# (openpi.shared.array_typing; jaxtyping is a wheel below), ml-collections (gemma_fast), numpydantic + pydantic
# (openpi.shared.normalize; pydantic wants typing-extensions>=4.16), dm-tree (openpi-client), tqdm-loggable (download).
# Versions as scripts/setup-openpi-env.sh pins them.
if [ -f $B/openpi-site.tar.xz ]; then echo "openpi-site: exists, skipped"; else
  "$PACK" "$tmp/openpi" extra rpent-openpi==0.2.2 tyro==1.0.17 docstring-parser typeguard shtab \
    openpi-client==0.1.2 augmax==0.4.1 beartype==0.19.0 ml-collections==1.1.0 numpydantic==1.8.1 dm-tree==0.1.10 \
    tqdm-loggable==0.4.1 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection \
    typing-extensions==4.16.0
  mv "$tmp/openpi/extra-site.tar.xz" $B/openpi-site.tar.xz
fi

# 2c. wheels device_env.sh pip-installs: lerobot[dataset] 0.6.1 wants datasets>=4.8,<5 (which wants dill<0.4.2,
# multiprocess<0.70.20, xxhash) and jsonlines>=4; jaxtyping 0.2.36 is openpi's pin (the device has 0.3.11).
# pandas and pyarrow are on the device (too large to carry anyway); torchcodec is not carried: lerobot then decodes
# video with pyav (av-site).
wheels=(datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 jsonlines==4.0.0 jaxtyping==0.2.36)
if ls $B/datasets-4.8.5-*.whl $B/dill-0.4.1-*.whl $B/multiprocess-0.70.19-*.whl \
      $B/xxhash-4.1.0-*.whl $B/jsonlines-4.0.0-*.whl $B/jaxtyping-0.2.36-*.whl >/dev/null 2>&1; then
  echo "wheels: exist, skipped"
else
  python3 -m pip download -q "${P[@]}" -d "$tmp/whl2" "${wheels[@]}"
  mv "$tmp"/whl2/*.whl $B/
fi

# 3. av (lerobot[av-dep]: av>=15,<16): the cp312 wheel is ~40 MB; unpacked and xz-compressed, ~28 MB. A wheel's
# files unpacked into /opt/site are what `pip install --no-deps --target` would put there (av has no scripts).
if [ -f $B/av-site.tar.xz ]; then echo "av-site: exists, skipped"; else
  python3 -m pip download -q "${P[@]}" -d "$tmp/whl5" av==15.1.0
  mkdir "$tmp/av"; python3 -m zipfile -e "$tmp"/whl5/av-*.whl "$tmp/av"
  (cd "$tmp/av" && tar -cf - . | xz -9 -T0 > "$ROOT/$B/av-site.tar.xz")
fi

# 4. .gl: the device README's command (amd64 lists kept apart in /tmp/amd64 so this machine's apt state is untouched).
# /.gl/ is already in .gitignore, so the README's `echo /.gl/ >>.git/info/exclude` is not needed.
gl=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
missing=0; for d in "${gl[@]}"; do ls .gl/"${d}"_*_amd64.deb >/dev/null 2>&1 || missing=1; done
if [ $missing = 0 ]; then echo ".gl: exists, skipped"; else
  mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086  # $o is several options
  apt-get $o update; (cd .gl && apt-get $o download "${gl[@]}")
fi

# 5. the call folders: the pieces in this order, each call filled up to what 64 MiB leaves beside the tree (tracked and
# untracked-but-not-ignored files travel on every call) and .gl, less a 1 MiB margin. A tarball that does not fit in
# what is left of a call is split there into parts (its sha256 beside the first part; device_env.sh joins the parts
# once all have come); wheels travel whole. Policy packages come first, so .device/call1 alone runs them
# (train_speed.sh).
rm -rf .device/call[0-9]*
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
budget=$(( 64 * 1024 * 1024 - tree - $(du -cb .gl | tail -1 | cut -f1) - 1024 * 1024 ))
python3 - "$budget" $B/policy-site.tar.xz $B/*.whl $B/openpi-site.tar.xz $B/sim-site.tar.xz $B/av-site.tar.xz <<'PY'
import hashlib, os, shutil, sys

budget, pieces = int(sys.argv[1]), sys.argv[2:]
call, used = 1, 0
for piece in pieces:
    name, size, done, part = os.path.basename(piece), os.path.getsize(piece), 0, 0
    while done < size:
        left = budget - used
        whole = done == 0 and size <= left
        if not whole and (left < 1024 * 1024 or not name.endswith(".tar.xz")):  # on to the next call
            call, used = call + 1, 0
            continue
        folder = f".device/call{call}"
        os.makedirs(folder, exist_ok=True)
        if whole:
            shutil.copy(piece, folder)
            done = size
        else:
            if part == 0:
                with open(piece, "rb") as f, open(f"{folder}/{name}.sha256", "w") as out:
                    out.write(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {name}\n")
            take = min(size - done, left - 1024)  # 1 KiB kept for the sha256 file
            with open(piece, "rb") as f, open(f"{folder}/{name}.part-{part:02d}", "wb") as out:
                f.seek(done)
                out.write(f.read(take))
            done, part = done + take, part + 1
        used = sum(entry.stat().st_size for entry in os.scandir(folder))
PY
calls=$(ls -d .device/call[0-9]* | wc -l)
du -sh .device/call[0-9]* .gl
echo "tree $((tree / 1024 / 1024)) MiB: $calls calls, call K with carry [\".gl\", \".device/callK\"]; the last runs all"
