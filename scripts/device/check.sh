#!/usr/bin/env bash
# GPU host check, run there by the device tool: builds xcomp against the PyTorch install's
# libtorch (CUDA) with the carried .devdeps, runs the test suite (the CUDA tests included) and
# benchmarks a random ~0.5B LLaMA on cuda and cpu (skipped with the argument "tests"). Prints everything; writes logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.devdeps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PWD/.devdeps/usr;$torch_prefix" -DXCOMP_DATA_DIR="$PWD/.devdeps/data" \
  -DXCOMP_TOKENIZERS_DIR="$PWD/.devdeps/tokenizers" > "$OUT/configure.log" 2>&1 \
  || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build/cuda -j16 > "$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
echo "configure+build: $(( $(date +%s) - t0 )) s"
(cd build/cuda && ctest --output-on-failure -j8 > "$OUT/ctest.log" 2>&1; tail -15 "$OUT/ctest.log")
[ "${1:-}" = "tests" ] && exit 0
cat > /tmp/llama05b.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 4096,
 "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 4096,
 "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2}
JSON
build/cuda/xcomp init --config /tmp/llama05b.json --out /tmp/llama05b --dtype bf16 >/dev/null 2>&1
for args in "--device cuda --dtype bf16 --batch 1" "--device cuda --dtype bf16 --batch 16" "--device cuda --dtype f32 --batch 1" "--device cpu --dtype bf16 --batch 1 --threads 16"; do
  build/cuda/xcomp bench --model /tmp/llama05b $args --prompt-tokens 512 --decode-tokens 64 2>&1 | tee -a "$OUT/bench.txt"
done
