// Always-on checks (independent of NDEBUG).
//
// A failed check throws zt::Error so the caller's RAII frees what it took and
// the CLI turns it into a clear message and a non-zero exit. The message must
// say what was expected, what was found, and a hint if any.
//
// Two kinds of failure read differently. A check of what the user gave (flag
// values, config files, data, checkpoints) reads "rank R: message": the user
// acts on the message, and a source location would only suggest a bug. A
// failed internal invariant reads "rank R, file:line: message", the location a
// bug report needs. A ZT_CHECK's kind follows from its layer: cli, lab, train,
// model, data and ckpt check the user's input; core, prof, ops, comm and zero
// keep internal invariants. ZT_USER_CHECK marks a check of user input in a
// lower layer, ZT_INTERNAL_CHECK an invariant in an upper one.
#pragma once

#include <stdexcept>
#include <string>

namespace zt {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The rank that prefixes every error message; set once by the launcher.
// -1: no rank exists yet (the launcher's own checks); no prefix.
void set_error_rank(int rank);
int error_rank();

enum class FailKind {
    by_layer,    // user input in cli, train, model, data, ckpt; internal elsewhere
    user_input,  // no source location in the message
    internal,    // the message names file:line
};

[[noreturn]] void fail(FailKind kind, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] void fail(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace zt

#define ZT_CHECK(cond, ...)                                       \
    do {                                                          \
        if (!(cond)) ::zt::fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define ZT_FAIL(...) ::zt::fail(__FILE__, __LINE__, __VA_ARGS__)

#define ZT_USER_CHECK(cond, ...)                                                              \
    do {                                                                                      \
        if (!(cond)) ::zt::fail(::zt::FailKind::user_input, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define ZT_USER_FAIL(...) ::zt::fail(::zt::FailKind::user_input, __FILE__, __LINE__, __VA_ARGS__)

#define ZT_INTERNAL_CHECK(cond, ...)                                                        \
    do {                                                                                    \
        if (!(cond)) ::zt::fail(::zt::FailKind::internal, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
