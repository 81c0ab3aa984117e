# Sourced by the GPU-machine scripts (device tool): packages carried as tarballs/wheels under .device/, unpacked once
# per machine into /opt/site (kept while the machine stays warm), Vulkan/EGL loaders from .gl/ (see the device README).
# `benchmarks/trained/pack_device.sh` builds them: sim-site.tar.xz (ManiSkill, SAPIEN), policy-site.tar.xz (lerobot
# 0.6.1, transformers 5.5.4), openpi-site.tar.xz, wheels (datasets, dill, multiprocess, jaxtyping, ...) and av (PyAV,
# which lerobot.datasets and so the lerobot backend import). Each call carries at most 64 MiB with the tree, so they
# travel in folders .device/call1, .device/call2, ... (as many as pack_device.sh printed), a tarball split where a
# call is full (chained calls while the machine stays warm; the last one can run anything).
set -e
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
mkdir -p /opt/site /opt/parts
# a tarball too big for one call's carry comes in parts (split -d) over several calls, with its sha256: joined once
# every part is there
for p in .device/c*/*.part-*; do [ -f "$p" ] && cp -n "$p" /opt/parts/; done
for sum in .device/c*/*.sha256; do
  [ -f "$sum" ] || continue; t=/opt/parts/$(basename "$sum" .sha256)
  want=$(cut -d' ' -f1 "$sum")
  [ -f "$t" ] || { cat "$t".part-* > "$t.tmp" && [ "$(sha256sum < "$t.tmp" | cut -d' ' -f1)" = "$want" ] && mv "$t.tmp" "$t"; } || rm -f "$t.tmp"
done
for t in .device/c*/*.tar.xz /opt/parts/*.tar.xz; do
  [ -f "$t" ] && [ ! -f "/opt/site/.$(basename "$t")" ] && tar -xJf "$t" -C /opt/site && touch "/opt/site/.$(basename "$t")"
done
for w in .device/c*/*.whl; do
  [ -f "$w" ] && [ ! -f "/opt/site/.$(basename "$w")" ] && python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /opt/site "$w" && touch "/opt/site/.$(basename "$w")"
done
if [ ! -d /opt/site/bench-0.1.0.dist-info ]; then  # bench runs from this tree; its plugins are entry points
  python3 - <<'PY'
import pathlib, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path("/opt/site/bench-0.1.0.dist-info")
info.mkdir()
(info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench\nVersion: 0.1.0\n")
groups = project.get("entry-points", {})
(info / "entry_points.txt").write_text("".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
                                               for g, eps in groups.items()))
PY
fi
export PYTHONPATH=/opt/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
  __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
BENCH="python3 -m bench.cli"
WORK=/opt/work
mkdir -p $WORK
set +e
