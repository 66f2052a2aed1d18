// Names of the activation recompute modes (activations.h). The plan of what
// each mode allocates lives with the forward/backward that uses it (model.cpp).
#include "model/activations.h"

#include "core/check.h"

namespace zt {

Recompute parse_recompute(const std::string& name) {
    if (name == "none") return Recompute::none;
    if (name == "attn") return Recompute::attn;
    if (name == "full") return Recompute::full;
    ZT_FAIL("recompute mode '%s': expected none, attn or full", name.c_str());
}

const char* recompute_name(Recompute r) {
    switch (r) {
        case Recompute::none:
            return "none";
        case Recompute::attn:
            return "attn";
        case Recompute::full:
            return "full";
    }
    ZT_FAIL("internal: recompute mode %d has no name", int(r));
}

}  // namespace zt
