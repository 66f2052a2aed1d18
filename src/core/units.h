// Sizes as people read them.
#pragma once

#include <cstdint>
#include <string>

namespace zt {

// Bytes in the largest binary unit that leaves a number >= 1: "0 B",
// "512 B", "1.50 KiB", "174.56 MiB", "4.94 GiB", "1.20 TiB" (two decimals
// above bytes).
std::string human_bytes(int64_t bytes);

}  // namespace zt
