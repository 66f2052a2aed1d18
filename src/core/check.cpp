#include "core/check.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace zt {

static int g_error_rank = 0;

void set_error_rank(int rank) {
    g_error_rank = rank;
}
int error_rank() {
    return g_error_rank;
}

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

// The path from the source tree's root: "src/train/config.cpp". The last
// "/src/" wins, so that a checkout under some ~/src/ still reads right.
static const char* source_path(const char* file) {
    const char* base = nullptr;
    for (const char* p = std::strstr(file, "/src/"); p; p = std::strstr(p + 1, "/src/"))
        base = p + 1;
    if (!base && std::strncmp(file, "src/", 4) == 0) base = file;
    if (!base) base = std::strstr(file, "tests/");
    return base ? base : file;
}

// The layers whose checks are about what the user gave (check.h).
static bool checks_user_input(const char* path) {
    for (const char* layer :
         {"src/cli/", "src/lab/", "src/train/", "src/model/", "src/data/", "src/ckpt/"})
        if (std::strncmp(path, layer, std::strlen(layer)) == 0) return true;
    return false;
}

static Error make_error(FailKind kind, const char* file, int line, const std::string& msg) {
    const char* path = source_path(file);
    bool user_input =
        kind == FailKind::user_input || (kind == FailKind::by_layer && checks_user_input(path));
    if (g_error_rank < 0)
        return user_input ? Error(msg) : Error(strprintf("%s:%d: %s", path, line, msg.c_str()));
    if (user_input) return Error(strprintf("rank %d: %s", g_error_rank, msg.c_str()));
    return Error(strprintf("rank %d, %s:%d: %s", g_error_rank, path, line, msg.c_str()));
}

void fail(FailKind kind, const char* file, int line, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string msg = vstrprintf(fmt, args);
    va_end(args);
    throw make_error(kind, file, line, msg);
}

void fail(const char* file, int line, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string msg = vstrprintf(fmt, args);
    va_end(args);
    throw make_error(FailKind::by_layer, file, line, msg);
}

}  // namespace zt
