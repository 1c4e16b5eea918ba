// Precompiled header for the library, CLI and tests: libtorch's headers dominate compile time.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
