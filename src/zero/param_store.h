// ParamStore: the compute copy of the parameters, the weights the model reads.
//
// The copy is in the compute dtype (f32, or bf16 for mixed precision).
// Replicated (stages 0-2) it holds every unit in full; after an optimizer step
// that updated only this rank's blocks (stages 1/2) it all-gathers them in
// buckets of whole units, up to allgather_bucket_size elements, planned in forward order
// (zero/bucket.h): a bucket that is exactly one unit is gathered in place,
// others are packed into a fixed staging ring and unpacked when waited for.
// acquire(u) waits for unit u's buckets only, so the gathers overlap the
// forward of the units before. Sharded (stage 3) it holds this rank's block
// of every unit; acquire(u) all-gathers u into a transient buffer, prefetches
// the units that follow in the order recorded during the first step, and
// release frees it unless the unit is under the persistence threshold.
// Stage 3 gathers in the same buckets of whole units as stages 1/2: a bucket
// of several units is one all-gather of their contiguous shards into a slot
// of the staging ring, unpacked into each missing unit's buffer when the
// first of them is waited for; a bucket of one unit gathers in place.
// With offload_file (stage 3, --offload-params nvme) the shards are in a file
// instead of memory (zero/offload.h's StateFile): the ledger's `params` is
// the one-unit buffer element() uses.
// Invariant: padding elements of every unit are zero.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/tensor.h"
#include "prof/memory.h"
#include "zero/bucket.h"
#include "zero/layout.h"
#include "zero/offload.h"
#include "zero/policy.h"

namespace zt {

struct ParamStoreOptions {
    DType dtype = DType::f32;
    bool overlap_comm = true;
    int64_t prefetch_elements = int64_t(50) << 20;
    int64_t persistence_threshold = int64_t(1) << 16;
    int64_t gather_bucket_elements = int64_t(1) << 20;  // allgather_bucket_size
    int staging_slots = 3;
    // Stage 3, non-empty: this rank's shards live in this file (created,
    // preallocated and removed by the store), not in memory: each gather
    // reads its units' shards, and element() holds one unit's shard in a
    // host buffer, written back when another unit is asked for or a gather
    // begins.
    std::string offload_file;
};

// The plan of the gathers (per-rank spans s_u, forward order; stages 1/2 after
// a step, stage 3 on use), whether bucket b is gathered in place (one whole
// unit), and the staging the store allocates for the others: slots x
// (world + 1) x largest in stages 1/2, slots x world x largest in stage 3
// (its send side is the rank's contiguous shards, unless they are in a file).
BucketPlan gather_plan(const ZeroLayout& zl, int64_t bucket_elements);
bool gathered_in_place(const ZeroLayout& zl, const Bucket& b);
int64_t gather_transient_elements(const ZeroLayout& zl, const StagePolicy& policy,
                                  int64_t bucket_elements, int max_slots,
                                  bool params_in_file = false);

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
    // Collectives one step's gathers issue (stages 1/2; stage 3's depend on the
    // prefetch schedule).
    int64_t publish_collectives() const;

  private:
    struct Gathered;
    Gathered& gather_unit(int unit);
    int64_t gather_cost(int unit) const;      // elements gather_unit(unit) would bring in
    int64_t bucket_elements(int unit) const;  // full elements of unit's gather bucket
    void wait_gathered(Gathered& g);
    void unpack_gathered(int bucket, StagingRing::Slot& slot);
    void prefetch_after(int unit);
    void free_gathered(int unit);
    void* full_unit(int unit);  // replicated: start of unit u
    // Sharded: unit u's shard in memory (offloaded: in the one-unit buffer,
    // read from the file when `read`).
    void* shard_of(int unit, bool read);
    void write_back();                                  // offloaded: the buffer to the file
    void read_shards(int first, int64_t n, void* dst);  // offloaded: n elements from unit first's
    int64_t offloaded_offset(int unit) const;           // byte of unit u's shard in the file
    void wait_published(int unit);
    void unpack(int bucket, StagingRing::Slot& slot);

    const ZeroLayout& zl_;
    StagePolicy policy_;
    ParamStoreOptions opt_;
    Communicator* comm_;
    MemoryLedger* ledger_;
    int rank_, world_;

    TypedLedgerBuffer copy_;            // (full_padded) replicated, (shard_total) sharded
    StateFile file_;                    // offloaded: the shards instead of copy_
    TypedLedgerBuffer unit_buf_;        // offloaded: (largest shard) for element()
    int buffered_unit_ = -1;            // offloaded: the unit in unit_buf_
    std::vector<Work> pending_gather_;  // replicated, by unit: in-place gathers after a step
    BucketPlan gather_plan_;            // world > 1: stages 1/2 after a step, stage 3 on use
    std::vector<int> last_staged_;      // by unit: its last staged bucket (-1: none)
    StagingRing ring_;
    StagingRing::Slot* filling_ = nullptr;
    std::vector<std::unique_ptr<Gathered>> gathered_;  // sharded, by unit
    std::vector<int> trace_;  // sharded: order of acquires in the first step
    bool trace_recorded_ = false;
    size_t trace_cursor_ = 0;
};

}  // namespace zt
