// ParamStore: the compute copy of the parameters, the weights the model reads.
//
// The copy is in the compute dtype (f32, or bf16 for mixed precision).
// Replicated (stages 0-2) it holds every unit in full; after an optimizer step
// that updated only this rank's blocks (stages 1/2) it all-gathers each unit,
// and acquire(u) waits for unit u's gather only, so the gathers overlap the
// forward of the units before. Sharded (stage 3) it holds this rank's block
// of every unit; acquire(u) all-gathers u into a transient buffer, prefetches
// the units that follow in the order recorded during the first step, and
// release frees it unless the unit is under the persistence threshold.
// Invariant: padding elements of every unit are zero.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "core/tensor.h"
#include "prof/memory.h"
#include "zero/layout.h"
#include "zero/policy.h"

namespace zt {

struct ParamStoreOptions {
    DType dtype = DType::f32;
    bool overlap_comm = true;
    int64_t prefetch_elements = int64_t(50) << 20;
    int64_t persistence_threshold = int64_t(1) << 16;
};

class ParamStore {
public:
    ParamStore(const ZeroLayout& zl, const StagePolicy& policy, const ParamStoreOptions& opt,
               Communicator* comm, int rank, MemoryLedger* ledger);
    ~ParamStore();

    DType dtype() const { return opt_.dtype; }
    // The unit's full compute copy, (n_u,) elements, valid until release(unit).
    Tensor acquire(int unit);
    void release(int unit);

    // Element e of unit u, for e in the range this rank updates (all of the
    // unit when replicated and the optimizer is not sharded, this rank's block
    // otherwise). Call between steps.
    void* element(int unit, int64_t e);
    // Sets unit u from its full fp32 values (n_u,), converted to the compute
    // dtype; a sharded store keeps this rank's block. Call between steps.
    void load_unit(int unit, const float* values);
    // The compute copy of this rank's block [begin, end) of unit u was
    // rewritten: stages 1/2 all-gather it to every rank (issued now, waited
    // for at acquire). Called for every unit, in forward order.
    void publish_block(int unit);
    // End of a step's forward and backward: frees gathered units (stage 3).
    void end_step();
    // Waits for every operation in flight.
    void drain();

private:
    struct Gathered;
    Gathered& gather_unit(int unit);
    void prefetch_after(int unit);
    void free_gathered(int unit);
    void* full_unit(int unit);  // replicated: start of unit u

    const ZeroLayout& zl_;
    StagePolicy policy_;
    ParamStoreOptions opt_;
    Communicator* comm_;
    MemoryLedger* ledger_;
    int rank_, world_;

    TypedLedgerBuffer copy_;               // (full_padded) replicated, (shard_total) sharded
    std::vector<Work> pending_gather_;     // replicated, by unit: gathers after a step
    std::vector<std::unique_ptr<Gathered>> gathered_;  // sharded, by unit
    std::vector<int> trace_;  // sharded: order of acquires in the first step
    bool trace_recorded_ = false;
    size_t trace_cursor_ = 0;
};

}  // namespace zt
