#!/usr/bin/env bash
# Loading a model from model.safetensors against pytorch_model.bin (both mapped, zero-copy; the
# .bin's pickle read by libtorch's unpickler), `xcomp convert pytorch` between them, and `xcomp
# compressor import` of a reference-code Trainer checkpoint (.bin) on it, mapped and deflated
# (which is read whole): a random bf16 LLaMA
# (default: the 0.5B config in bench/configs) as safetensors, the same tensors written by PyTorch's
# torch.save (Debian's python3-torch, /usr/bin/python3; only this script needs it). Prints each
# step's wall time and peak resident memory (GNU time), and `xcomp bench`'s own lines; the two
# models' logits are the same (tests/model/loader_test.cpp). docs/BENCHMARKS.md.
#   bench/checkpoint-formats.sh [XCOMP] [CONFIG] [THREADS]
set -euo pipefail
xcomp="${1:-build/release/xcomp}"
config="${2:-$(dirname "$0")/configs/random-0.5b.json}"
threads="${3:-1}"
[ -x "$xcomp" ] || { echo "error: $xcomp: not built (scripts/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "error: /usr/bin/python3 lacks torch (apt-get install python3-torch)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$xcomp" init --config "$config" --out "$tmp/st" --dtype bf16 2> /dev/null
mkdir -p "$tmp/bin"
cp "$tmp/st/config.json" "$tmp/bin/"
# The safetensors file's tensors, byte for byte, saved by torch.save as model.state_dict() is.
/usr/bin/python3 - "$tmp/st/model.safetensors" "$tmp/bin/pytorch_model.bin" <<'PY'
import collections, json, struct, sys
import torch
src, dst = sys.argv[1:]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
dtypes = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}
sd = collections.OrderedDict()
for name, e in sorted(header.items()):
    if name == "__metadata__":
        continue
    begin, end = e["data_offsets"]
    sd[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[e["dtype"]]).reshape(e["shape"])
torch.save(sd, dst)
PY
du -m "$tmp/st/model.safetensors" "$tmp/bin/pytorch_model.bin"
measure() {
  local what="$1"; shift
  /usr/bin/time -f "$what: %e s wall, %M KiB peak resident" "$@" 2> "$tmp/time.txt" > "$tmp/out.txt" || { cat "$tmp/time.txt" >&2; exit 1; }
  grep -v "^warning" "$tmp/out.txt" | sed 's/^/    /' || true
  tail -1 "$tmp/time.txt"
}
for dtype in bf16 f32; do
  for folder in st bin; do
    measure "bench, weights $dtype, from $folder" "$xcomp" bench --model "$tmp/$folder" --threads "$threads" \
      --prompt-tokens 8 --decode-tokens 2 --repeats 1 --dtype f32 --weights-dtype "$dtype"
  done
done
measure "convert pytorch" "$xcomp" convert pytorch "$tmp/bin" --out "$tmp/converted"
cmp -s "$tmp/converted/config.json" "$tmp/st/config.json" && echo "converted: config.json copied"
# A Hugging Face Trainer checkpoint of the reference code's 500xCompressor on this base (the whole
# module: base weights under PEFT's names, LoRA r 8 on q_proj/v_proj, 4 memory embeddings), as
# torch.save writes it; `compressor import` touches only the LoRA, the memory and 4 base weights.
/usr/bin/python3 - "$tmp/bin/pytorch_model.bin" "$tmp/trainer.bin" <<'PY'
import collections, sys
import torch
src, dst = sys.argv[1:]
base = torch.load(src)
sd = collections.OrderedDict()
g = torch.Generator().manual_seed(0)
for name, t in base.items():
    peft = name
    for proj in (".q_proj.", ".v_proj."):
        if proj in name:
            peft = name.replace(proj, proj + "base_layer.")
            stem = "llama.base_model.model." + name[: -len("weight")].replace(proj, proj)
            sd[stem + "lora_A.default.weight"] = (torch.randn(8, t.shape[1], generator=g) / 100).to(t.dtype)
            sd[stem + "lora_B.default.weight"] = (torch.randn(t.shape[0], 8, generator=g) / 100).to(t.dtype)
    sd["llama.base_model.model." + peft] = t
sd["memory_embeddings"] = torch.randn(1, 4, base["model.embed_tokens.weight"].shape[1], generator=g).to(torch.bfloat16)
torch.save(sd, dst)
PY
du -m "$tmp/trainer.bin"
measure "compressor import (Trainer checkpoint .bin)" "$xcomp" compressor import "$tmp/trainer.bin" --model "$tmp/st" --out "$tmp/imported"
# The same archive deflated (Python's zipfile): not viewable in place, so read whole, as every
# .bin was before the reader mapped them.
/usr/bin/python3 - "$tmp/trainer.bin" "$tmp/deflated.bin" <<'PY'
import sys, zipfile
src, dst = sys.argv[1:]
with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as w:
    for info in z.infolist():
        w.writestr(info.filename, z.read(info.filename))
PY
measure "compressor import (the same, deflated)" "$xcomp" compressor import "$tmp/deflated.bin" --model "$tmp/st" --out "$tmp/imported2"
cmp -s "$tmp/imported/memory.safetensors" "$tmp/imported2/memory.safetensors" && echo "both imports wrote the same memory"
