#include "core/units.h"

#include "core/check.h"

namespace zt {

std::string human_bytes(int64_t bytes) {
    static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes > -1024 && bytes < 1024) return strprintf("%lld B", (long long)bytes);
    double v = double(bytes);
    int unit = -1;
    while (unit + 1 < 5 && (v >= 1024.0 || v <= -1024.0)) {
        v /= 1024.0;
        unit++;
    }
    return strprintf("%.2f %s", v, kUnits[unit]);
}

}  // namespace zt
