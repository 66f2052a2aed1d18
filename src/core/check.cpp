#include "core/check.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace zt {

static int g_error_rank = 0;

void set_error_rank(int rank) { g_error_rank = rank; }
int error_rank() { return g_error_rank; }

static std::string vstrprintf(const char* fmt, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string out(n > 0 ? size_t(n) : 0, '\0');
    if (n > 0) std::vsnprintf(out.data(), size_t(n) + 1, fmt, args);
    return out;
}

std::string strprintf(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string s = vstrprintf(fmt, args);
    va_end(args);
    return s;
}

void fail(const char* file, int line, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string msg = vstrprintf(fmt, args);
    va_end(args);
    const char* base = std::strstr(file, "src/");
    if (!base) base = std::strstr(file, "tests/");
    if (!base) base = file;
    throw Error(strprintf("rank %d, %s:%d: %s", g_error_rank, base, line, msg.c_str()));
}

}  // namespace zt
