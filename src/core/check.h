// Always-on checks (independent of NDEBUG).
//
// A failed check throws zt::Error carrying "rank R, file:line: message" so the
// caller's RAII frees what it took and the CLI turns it into a clear message
// and a non-zero exit. Checks guard user input and internal invariants alike;
// the message must say what was expected, what was found, and a hint if any.
#pragma once

#include <stdexcept>
#include <string>

namespace zt {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The rank that prefixes every error message; set once by the launcher.
void set_error_rank(int rank);
int error_rank();

[[noreturn]] void fail(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace zt

#define ZT_CHECK(cond, ...)                                   \
    do {                                                      \
        if (!(cond)) ::zt::fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define ZT_FAIL(...) ::zt::fail(__FILE__, __LINE__, __VA_ARGS__)
