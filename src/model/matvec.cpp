// matvec: the few-row linear kernel (AVX2/FMA/F16C, chosen at run time; elsewhere unavailable).
#include "xcomp/matvec.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "xcomp/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XCOMP_MATVEC_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace xcomp {

namespace {

// On unless XCOMP_MATVEC is "0" or "off" in the environment (comparisons without rebuilding, or a
// way out on a CPU where the kernel misbehaves); set_matvec_enabled overrides it.
bool enabled_by_environment() {
  const char* v = std::getenv("XCOMP_MATVEC");
  return v == nullptr || (std::strcmp(v, "0") != 0 && std::strcmp(v, "off") != 0);
}

std::atomic<bool> g_enabled{enabled_by_environment()};

enum class WeightKind { kF32, kBF16, kF16, kInt8 };

bool cpu_has_kernel() {
#ifdef XCOMP_MATVEC_X86
  static const bool has = [] {
    __builtin_cpu_init();
    // F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return has;
#else
  return false;
#endif
}

bool kind_of(torch::ScalarType t, WeightKind& kind) {
  switch (t) {
    case torch::kFloat32:
      kind = WeightKind::kF32;
      return true;
    case torch::kBFloat16:
      kind = WeightKind::kBF16;
      return true;
    case torch::kFloat16:
      kind = WeightKind::kF16;
      return true;
    case torch::kChar:
      kind = WeightKind::kInt8;
      return true;
    default:
      return false;
  }
}

// Element k of a weight row, widened to f32 (the tail of a row that is not a multiple of 8).
template <WeightKind K>
float widen_one(const void* row, int64_t k) {
  if constexpr (K == WeightKind::kF32) {
    return static_cast<const float*>(row)[k];
  } else if constexpr (K == WeightKind::kBF16) {
    const uint32_t bits = uint32_t{static_cast<const uint16_t*>(row)[k]} << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else if constexpr (K == WeightKind::kF16) {
    return static_cast<float>(
        c10::Half(static_cast<const uint16_t*>(row)[k], c10::Half::from_bits()));
  } else {
    return static_cast<float>(static_cast<const int8_t*>(row)[k]);
  }
}

#ifdef XCOMP_MATVEC_X86

#define XCOMP_TARGET __attribute__((target("avx2,fma,f16c")))

// Elements [k, k + 8) of a weight row, widened to f32 in a register.
template <WeightKind K>
XCOMP_TARGET inline __m256 widen8(const void* row, int64_t k) {
  if constexpr (K == WeightKind::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  } else if constexpr (K == WeightKind::kBF16) {  // bf16 is the top half of an f32
    const auto v =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  } else if constexpr (K == WeightKind::kF16) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  } else {
    const auto v =
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(row) + k));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
  }
}

XCOMP_TARGET inline float sum_lanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// y[r, o] for R activation rows and weight rows [o0, o1), O weight rows at a time (O x R
// independent accumulators hide the FMA latency; the loops are unrolled so they stay in
// registers). x: R rows of `in` f32; w: the weight's bytes, `row_bytes` per row; scale: per
// weight row or null; y: R rows of `out` f32.
template <WeightKind K, int O, int R>
XCOMP_TARGET void tile(const float* x, int64_t in, const char* w, int64_t row_bytes,
                       const float* scale, float* y, int64_t out, int64_t o0, int64_t o1) {
  const int64_t in8 = in & ~int64_t{7};
  int64_t o = o0;
  for (; o + O <= o1; o += O) {
    __m256 acc[O][R];
#pragma GCC unroll 8
    for (int i = 0; i < O; ++i)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < in8; k += 8) {
      __m256 xv[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * in + k);
#pragma GCC unroll 8
      for (int i = 0; i < O; ++i) {
        const __m256 wv = widen8<K>(w + (o + i) * row_bytes, k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[i][r] = _mm256_fmadd_ps(wv, xv[r], acc[i][r]);
      }
    }
    for (int i = 0; i < O; ++i) {
      const void* row = w + (o + i) * row_bytes;
      for (int r = 0; r < R; ++r) {
        float s = sum_lanes(acc[i][r]);
        for (int64_t k = in8; k < in; ++k) s += widen_one<K>(row, k) * x[r * in + k];
        y[r * out + o + i] = scale ? s * scale[o + i] : s;
      }
    }
  }
  if constexpr (O > 1) {
    if (o < o1) tile<K, 1, R>(x, in, w, row_bytes, scale, y, out, o, o1);
  }
}

// Rows [0, rows) of x [rows, in] against weight rows [o0, o1), four activation rows at a time.
template <WeightKind K>
void rows_against(const float* x, int64_t rows, int64_t in, const char* w, int64_t row_bytes,
                  const float* scale, float* y, int64_t out, int64_t o0, int64_t o1) {
  for (int64_t r = 0; r < rows; r += 4) {
    const float* xr = x + r * in;
    float* yr = y + r * out;
    switch (std::min<int64_t>(4, rows - r)) {
      case 1:
        tile<K, 4, 1>(xr, in, w, row_bytes, scale, yr, out, o0, o1);
        break;
      case 2:
        tile<K, 4, 2>(xr, in, w, row_bytes, scale, yr, out, o0, o1);
        break;
      case 3:
        tile<K, 2, 3>(xr, in, w, row_bytes, scale, yr, out, o0, o1);
        break;
      default:
        tile<K, 2, 4>(xr, in, w, row_bytes, scale, yr, out, o0, o1);
        break;
    }
  }
}

#endif  // XCOMP_MATVEC_X86

}  // namespace

bool matvec_cpu_supported() { return cpu_has_kernel(); }

bool matvec_available() { return g_enabled.load(std::memory_order_relaxed) && cpu_has_kernel(); }

void set_matvec_enabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

int64_t matvec_max_rows(torch::ScalarType weight_dtype) {
  WeightKind kind;
  return kind_of(weight_dtype, kind) ? 32 / static_cast<int64_t>(c10::elementSize(weight_dtype))
                                     : 0;
}

bool matvec_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!x.defined() || !weight.defined() || !matvec_available()) return false;
  if (x.scalar_type() != torch::kFloat32 || !x.device().is_cpu() || x.dim() < 1) return false;
  if (weight.dim() != 2 || !weight.device().is_cpu() || !weight.is_contiguous() ||
      x.size(-1) != weight.size(1))
    return false;
  const int64_t rows = x.numel() / std::max<int64_t>(x.size(-1), 1);
  if (rows < 1 || rows > matvec_max_rows(weight.scalar_type())) return false;
  return !(torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()));
}

torch::Tensor matvec(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& row_scale) {
  if (!cpu_has_kernel())
    throw Error("matvec", "this CPU lacks AVX2, FMA or F16C", "use torch::matmul instead");
  WeightKind kind;
  if (!weight.defined() || weight.dim() != 2 || !kind_of(weight.scalar_type(), kind))
    throw Error("matvec", "the weight must be a 2-D f32, bf16, f16 or int8 tensor");
  if (!weight.device().is_cpu() || !weight.is_contiguous())
    throw Error("matvec", "the weight must be contiguous on the CPU");
  if (!x.defined() || x.scalar_type() != torch::kFloat32 || !x.device().is_cpu() || x.dim() < 1 ||
      x.size(-1) != weight.size(1))
    throw Error("matvec",
                "input must be f32 [..., " + std::to_string(weight.size(1)) + "] on the CPU");
  const bool int8 = kind == WeightKind::kInt8;
  if (int8 != row_scale.defined())
    throw Error("matvec", int8 ? "int8 weights need their row scales"
                               : "row scales are for int8 weights only");
  if (int8 && (row_scale.dim() != 1 || row_scale.size(0) != weight.size(0) ||
               row_scale.scalar_type() != torch::kFloat32 || !row_scale.device().is_cpu()))
    throw Error("matvec",
                "row scales must be f32 [" + std::to_string(weight.size(0)) + "] on the CPU");
#ifdef XCOMP_MATVEC_X86
  const int64_t in = weight.size(1), out = weight.size(0);
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  auto x2 = x.reshape({-1, in}).contiguous();  // [rows, in]
  const int64_t rows = x2.size(0);
  auto y = torch::empty({rows, out}, x.options().requires_grad(false));  // [rows, out]
  auto scale = int8 ? row_scale.contiguous() : torch::Tensor();
  const float* xp = x2.data_ptr<float>();
  const char* wp = static_cast<const char*>(weight.data_ptr());
  const int64_t row_bytes = in * static_cast<int64_t>(weight.element_size());
  const float* sp = int8 ? scale.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // Chunks of at least 64 KiB of weights per thread (fewer threads for small layers).
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  at::parallel_for(0, out, grain, [&](int64_t o0, int64_t o1) {
    switch (kind) {
      case WeightKind::kF32:
        rows_against<WeightKind::kF32>(xp, rows, in, wp, row_bytes, sp, yp, out, o0, o1);
        break;
      case WeightKind::kBF16:
        rows_against<WeightKind::kBF16>(xp, rows, in, wp, row_bytes, sp, yp, out, o0, o1);
        break;
      case WeightKind::kF16:
        rows_against<WeightKind::kF16>(xp, rows, in, wp, row_bytes, sp, yp, out, o0, o1);
        break;
      case WeightKind::kInt8:
        rows_against<WeightKind::kInt8>(xp, rows, in, wp, row_bytes, sp, yp, out, o0, o1);
        break;
    }
  });
  return y.view(sizes);
#else
  throw Error("matvec", "not built for this architecture");
#endif
}

}  // namespace xcomp
