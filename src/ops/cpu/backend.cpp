// The CPU side of the model's ops backend (ops/backend.h).
#include "ops/backend.h"

#include <algorithm>

namespace zt {

int cpu_classifier_chunk_rows(int64_t N, int V) {
    int64_t rows = (int64_t(4) << 20) / V;
    return int(std::min<int64_t>(std::max<int64_t>(rows, 16), N));
}

}  // namespace zt
