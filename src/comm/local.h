// local: the world-size-1 backend. Collectives are copies (a sum or max over one
// rank is the rank's own data; avg divides by 1); send/recv are refused, as
// there is no peer. Runs on the shared communication thread (queued.h), so
// ordering, handles and accounting behave exactly as on the real backends.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace zt {

std::unique_ptr<Communicator> make_local_communicator(const CommOptions& opt);

}  // namespace zt
