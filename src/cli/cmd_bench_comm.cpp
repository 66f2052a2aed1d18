// zerotrain bench-comm: the bandwidth of the collectives, measured the way
// nccl-tests measures it, on any backend (and through simnet).
//
// For each op and each size S (the FULL array: the all-reduce buffer, the
// reduce-scatter input, the all-gather output): warm-up iterations, then
// `iters` operations issued back to back and waited for; time = the per-rank
// mean, averaged across ranks. algbw = S / time; busbw = algbw x 2(n-1)/n for
// all_reduce and (n-1)/n for reduce_scatter and all_gather, so that busbw is
// comparable with the link's bandwidth whatever the world size.
//
// Invariant: every result is verified. Inputs are small integers, so every
// sum over ranks is exact in f32 and bf16 whatever the reduction order; wrong
// elements are counted on each rank, summed across ranks, reported per row,
// and any error makes the exit status non-zero.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "comm/communicator.h"
#include "comm/launch.h"
#include "core/check.h"
#include "core/dtype.h"
#include "prof/timer.h"

#if ZT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace zt::cli {

namespace {

// Flags as typed: parsed here (not by CLI11) so that every bad value gets
// the project's error path, a message naming flag, value and what is accepted.
struct BenchCommFlags {
    std::string op;
    std::string nproc;
    std::string comm;
    std::string dtype = "f32";
    std::string min_bytes = "8";
    std::string max_bytes = "64M";
    std::string warmup = "5";
    std::string iters = "20";
    std::string sim_bandwidth_gbps = "0";
    std::string sim_latency_us = "0";
    bool netns = false;
    std::string netns_bandwidth_gbps = "0";
    std::string netns_latency_us = "0";
    std::string timeout_s = "300";
    bool json = false;
};

struct BenchCommSettings {
    std::vector<CommOp> ops;
    int nproc = 0;     // 0: not given
    std::string comm;  // empty: mpi under a multi-rank launcher, local otherwise
    DType dtype = DType::f32;
    int64_t min_bytes = 0;
    int64_t max_bytes = 0;
    int warmup = 0;
    int iters = 0;
    double sim_bandwidth_gbps = 0;
    double sim_latency_us = 0;
    bool netns = false;
    ShapedLink netns_link;
    double timeout_s = 300;
    bool json = false;
};

int64_t parse_int(const char* flag, const std::string& text, int64_t min_value,
                  const char* accepted) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    ZT_CHECK(ec == std::errc() && end == text.data() + text.size() && v >= min_value,
             "%s '%s': expected %s", flag, text.c_str(), accepted);
    return v;
}

double parse_number(const char* flag, const std::string& text, const char* accepted) {
    char* end = nullptr;
    double v = text.empty() ? NAN : std::strtod(text.c_str(), &end);
    ZT_CHECK(!text.empty() && end == text.c_str() + text.size() && std::isfinite(v) && v >= 0,
             "%s '%s': expected %s", flag, text.c_str(), accepted);
    return v;
}

// "4096", "64K", "16M", "1G" (binary multiples, as nccl-tests reads them).
int64_t parse_bytes(const char* flag, const std::string& text) {
    const char* accepted = "a positive byte count such as 8, 4096, 64K, 16M or 1G (K = 1024)";
    int64_t v = 0;
    const char* first = text.data();
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, v);
    ZT_CHECK(ec == std::errc() && v > 0, "%s '%s': expected %s", flag, text.c_str(), accepted);
    std::string suffix(end, last);
    int shift = 0;
    if (suffix == "K" || suffix == "k") {
        shift = 10;
    } else if (suffix == "M" || suffix == "m") {
        shift = 20;
    } else if (suffix == "G" || suffix == "g") {
        shift = 30;
    } else {
        ZT_CHECK(suffix.empty(), "%s '%s': unknown suffix '%s'; expected %s", flag, text.c_str(),
                 suffix.c_str(), accepted);
    }
    ZT_CHECK(v <= (int64_t(1) << (62 - shift)), "%s '%s': too large", flag, text.c_str());
    return v << shift;
}

BenchCommSettings parse_flags(const BenchCommFlags& f) {
    BenchCommSettings s;
    const char* ops = "all_reduce, reduce_scatter, all_gather or all";
    ZT_CHECK(!f.op.empty(), "--op is required: %s", ops);
    if (f.op == "all") {
        s.ops = {CommOp::all_reduce, CommOp::reduce_scatter, CommOp::all_gather};
    } else if (f.op == "all_reduce") {
        s.ops = {CommOp::all_reduce};
    } else if (f.op == "reduce_scatter") {
        s.ops = {CommOp::reduce_scatter};
    } else if (f.op == "all_gather") {
        s.ops = {CommOp::all_gather};
    } else {
        ZT_FAIL("--op '%s': unknown operation; expected %s", f.op.c_str(), ops);
    }
    if (!f.nproc.empty()) s.nproc = int(parse_int("--nproc", f.nproc, 1, "a number of ranks >= 1"));
    if (!f.comm.empty()) {
        ZT_CHECK(f.comm == "local" || f.comm == "mpi" || f.comm == "ring" || f.comm == "tcp" ||
                     f.comm == "nccl",
                 "--comm '%s': unknown backend; expected local, mpi, ring, tcp or nccl",
                 f.comm.c_str());
        s.comm = f.comm;
    }
    if (f.dtype == "f32") {
        s.dtype = DType::f32;
    } else if (f.dtype == "bf16") {
        s.dtype = DType::bf16;
    } else {
        ZT_FAIL("--dtype '%s': expected f32 or bf16", f.dtype.c_str());
    }
    s.min_bytes = parse_bytes("--min-bytes", f.min_bytes);
    s.max_bytes = parse_bytes("--max-bytes", f.max_bytes);
    ZT_CHECK(s.min_bytes <= s.max_bytes,
             "--min-bytes %s is larger than --max-bytes %s; expected min <= max",
             f.min_bytes.c_str(), f.max_bytes.c_str());
    s.warmup = int(parse_int("--warmup", f.warmup, 0, "a number of iterations >= 0"));
    s.iters = int(parse_int("--iters", f.iters, 1, "a number of iterations >= 1"));
    s.sim_bandwidth_gbps = parse_number("--sim-bandwidth-gbps", f.sim_bandwidth_gbps,
                                        "a bandwidth >= 0 in gigabits per second (0 = unlimited)");
    s.sim_latency_us =
        parse_number("--sim-latency-us", f.sim_latency_us, "a latency >= 0 in microseconds");
    s.netns = f.netns;
    s.netns_link.bandwidth_gbps =
        parse_number("--netns-bandwidth-gbps", f.netns_bandwidth_gbps,
                     "a bandwidth >= 0 in gigabits per second (0 = not shaped)");
    s.netns_link.latency_us =
        parse_number("--netns-latency-us", f.netns_latency_us, "a latency >= 0 in microseconds");
    ZT_CHECK(s.netns || (s.netns_link.bandwidth_gbps == 0 && s.netns_link.latency_us == 0),
             "--netns-bandwidth-gbps / --netns-latency-us shape the links of --netns; add --netns");
    ZT_CHECK(!s.netns || (s.sim_bandwidth_gbps == 0 && s.sim_latency_us == 0),
             "--netns with --sim-bandwidth-gbps/--sim-latency-us: shape real links or simulate "
             "them, not both");
    ZT_CHECK(!s.netns || under_launcher() || s.nproc >= 2,
             "--netns: needs --nproc N with N >= 2 (links join ranks)");
    ZT_CHECK(!s.netns || !under_launcher() || std::getenv("ZT_JOB_DIR") != nullptr,
             "--netns under an outside launcher: zerotrain makes the namespaces only for the "
             "ranks it starts itself; use --nproc N without mpirun/srun");
    s.timeout_s = parse_number("--comm-timeout-s", f.timeout_s, "seconds >= 0 (0 = no watchdog)");
    s.json = f.json;
    ZT_CHECK(!(s.comm == "local" && s.nproc > 1),
             "--comm local runs one process, but --nproc is %d; use --comm mpi or --comm ring",
             s.nproc);
    return s;
}

// This process's own command line, to start it again under mpirun.
std::vector<std::string> own_command_line() {
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ZT_CHECK(!all.empty(),
             "--nproc: cannot read /proc/self/cmdline to start the ranks; start them with "
             "mpirun -np N instead");
    std::vector<std::string> args;
    size_t start = 0;
    while (start < all.size()) {
        size_t end = all.find('\0', start);
        if (end == std::string::npos) end = all.size();
        args.push_back(all.substr(start, end - start));
        start = end + 1;
    }
    return args;
}

// The benchmark's memory: host memory for the CPU backends; for nccl, device
// memory with a host mirror in which the data is written and checked.
class BenchBuffer {
  public:
    BenchBuffer(size_t bytes, bool on_device) : host_(bytes), on_device_(on_device) {
#if ZT_HAVE_CUDA
        if (on_device_) cuda_check(cudaMalloc(&device_, bytes), "cudaMalloc");
#else
        ZT_CHECK(!on_device_, "device buffers need a build with CUDA");
#endif
    }
    ~BenchBuffer() {
#if ZT_HAVE_CUDA
        if (device_) cudaFree(device_);
#endif
    }
    BenchBuffer(const BenchBuffer&) = delete;
    BenchBuffer& operator=(const BenchBuffer&) = delete;

    void* data() {
        return on_device_ ? device_ : host_.data();
    }  // what the communicator gets
    unsigned char* host() {
        return host_.data();
    }

    // The communicator runs on a non-blocking stream, which does not wait for
    // copies on the legacy default stream, so both copies synchronise the
    // whole device (outside the timed loop): the data is in place before a
    // collective reads it, and every collective has finished before it is read.
    void upload(size_t bytes) {
#if ZT_HAVE_CUDA
        if (on_device_) {
            cuda_check(cudaMemcpy(device_, host_.data(), bytes, cudaMemcpyHostToDevice),
                       "cudaMemcpy to device");
            cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize after the upload");
        }
#else
        (void)bytes;
#endif
    }
    void download(size_t bytes) {
#if ZT_HAVE_CUDA
        if (on_device_) {
            cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize before the download");
            cuda_check(cudaMemcpy(host_.data(), device_, bytes, cudaMemcpyDeviceToHost),
                       "cudaMemcpy to host");
        }
#else
        (void)bytes;
#endif
    }

  private:
#if ZT_HAVE_CUDA
    static void cuda_check(cudaError_t e, const char* call) {
        ZT_CHECK(e == cudaSuccess, "bench-comm: %s failed: %s", call, cudaGetErrorString(e));
    }
#endif
    std::vector<unsigned char> host_;
    bool on_device_ = false;
    void* device_ = nullptr;
};

// Verifiable data: rank r's element at global index i is a small integer, so
// the sum over up to 64 ranks stays within +-256, exact in bf16 (8 significant
// bits) and f32 whatever the order of additions.
struct Pattern {
    int amplitude = 4;  // values in [-amplitude, amplitude]

    Pattern(int world, DType dtype) {
        if (dtype == DType::bf16 && world > 64) amplitude = std::max(1, 256 / world);
    }
    float value(int rank, int64_t i) const {
        int64_t m = 2 * amplitude + 1;
        return float((i * 5 + int64_t(rank) * 3 + i / 257) % m - amplitude);
    }
    float sum(int world, int64_t i) const {
        float s = 0;
        for (int r = 0; r < world; r++) s += value(r, i);
        return s;
    }
};

void store(unsigned char* base, int64_t i, float v, DType dtype) {
    if (dtype == DType::f32) {
        reinterpret_cast<float*>(base)[i] = v;
    } else {
        reinterpret_cast<bf16*>(base)[i] = f32_to_bf16(v);
    }
}

float load(const unsigned char* base, int64_t i, DType dtype) {
    return dtype == DType::f32 ? reinterpret_cast<const float*>(base)[i]
                               : bf16_to_f32(reinterpret_cast<const bf16*>(base)[i]);
}

// One op at one size: count is the element count of the full array S.
struct Case {
    CommOp op;
    int64_t count;
    DType dtype;
    int rank;
    int world;
    int64_t block() const { return count / world; }  // per-rank block of rs / ag
};

// a: the all-reduce buffer, or the reduce-scatter / all-gather input; b: their output.
Work issue(Communicator& comm, const Case& c, BenchBuffer& a, BenchBuffer& b) {
    switch (c.op) {
        case CommOp::all_reduce:
            return comm.all_reduce_async(a.data(), c.count, c.dtype, ReduceOp::sum);
        case CommOp::reduce_scatter:
            return comm.reduce_scatter_async(a.data(), b.data(), c.block(), c.dtype, ReduceOp::sum);
        case CommOp::all_gather:
            return comm.all_gather_async(a.data(), b.data(), c.block(), c.dtype);
        default:
            ZT_FAIL("bench-comm does not measure %s", comm_op_name(c.op));
    }
}

size_t elem(const Case& c) {
    return dtype_size(c.dtype);
}

void fill_inputs(const Case& c, const Pattern& p, BenchBuffer& a) {
    unsigned char* h = a.host();
    switch (c.op) {
        case CommOp::all_reduce:
        case CommOp::reduce_scatter:
            for (int64_t i = 0; i < c.count; i++) store(h, i, p.value(c.rank, i), c.dtype);
            a.upload(size_t(c.count) * elem(c));
            break;
        case CommOp::all_gather: {
            int64_t first = int64_t(c.rank) * c.block();
            for (int64_t k = 0; k < c.block(); k++)
                store(h, k, p.value(c.rank, first + k), c.dtype);
            a.upload(size_t(c.block()) * elem(c));
            break;
        }
        default:
            break;
    }
}

// Wrong elements in this rank's result.
int64_t count_errors(const Case& c, const Pattern& p, BenchBuffer& a, BenchBuffer& b) {
    int64_t errors = 0;
    switch (c.op) {
        case CommOp::all_reduce:
            a.download(size_t(c.count) * elem(c));
            for (int64_t i = 0; i < c.count; i++)
                errors += !(load(a.host(), i, c.dtype) == p.sum(c.world, i));
            break;
        case CommOp::reduce_scatter: {
            b.download(size_t(c.block()) * elem(c));
            int64_t first = int64_t(c.rank) * c.block();
            for (int64_t k = 0; k < c.block(); k++)
                errors += !(load(b.host(), k, c.dtype) == p.sum(c.world, first + k));
            break;
        }
        case CommOp::all_gather:
            b.download(size_t(c.count) * elem(c));
            for (int64_t j = 0; j < c.count; j++)
                errors += !(load(b.host(), j, c.dtype) == p.value(int(j / c.block()), j));
            break;
        default:
            break;
    }
    return errors;
}

// busbw / algbw: the share of S each rank's link carries in the ring algorithm.
double bus_factor(CommOp op, int world) {
    double n = world;
    return op == CommOp::all_reduce ? 2 * (n - 1) / n : (n - 1) / n;
}

struct Row {
    int64_t bytes = 0;
    int64_t count = 0;
    double time_s = 0;
    double algbw_gbps = 0;
    double busbw_gbps = 0;
    int64_t errors = 0;
};

// Verify, warm up, time; every rank returns the same row.
Row measure(Communicator& comm, const Case& c, const BenchCommSettings& s, BenchBuffer& a,
            BenchBuffer& b, BenchBuffer& reduce_buf) {
    Pattern pattern(c.world, c.dtype);
    fill_inputs(c, pattern, a);
    issue(comm, c, a, b).wait();
    int64_t errors = count_errors(c, pattern, a, b);

    // Repeated in-place all-reduces would grow the data by the world size
    // each time; from zeros they stay zeros, which the check below expects.
    if (c.op == CommOp::all_reduce) {
        std::fill_n(a.host(), size_t(c.count) * elem(c), 0);
        a.upload(size_t(c.count) * elem(c));
    }
    std::vector<Work> works(size_t(std::max(s.warmup, s.iters)));
    for (int i = 0; i < s.warmup; i++) works[size_t(i)] = issue(comm, c, a, b);
    for (int i = 0; i < s.warmup; i++) works[size_t(i)].wait();
    comm.barrier();
    double t0 = now_seconds();
    for (int i = 0; i < s.iters; i++) works[size_t(i)] = issue(comm, c, a, b);
    for (int i = 0; i < s.iters; i++) works[size_t(i)].wait();
    double mean_s = (now_seconds() - t0) / s.iters;

    // The timed results are checked too: all-reduce of zeros, the others as before.
    if (c.op == CommOp::all_reduce) {
        a.download(size_t(c.count) * elem(c));
        for (int64_t i = 0; i < c.count; i++) errors += !(load(a.host(), i, c.dtype) == 0.0f);
    } else {
        errors += count_errors(c, pattern, a, b);
    }

    // Sum of per-rank means and of errors across ranks, in f64: exact for
    // error counts below 2^53, so any non-zero count stays non-zero.
    double both[2] = {mean_s, double(errors)};
    std::copy_n(reinterpret_cast<unsigned char*>(both), sizeof both, reduce_buf.host());
    reduce_buf.upload(sizeof both);
    comm.all_reduce(reduce_buf.data(), 2, DType::f64, ReduceOp::sum);
    reduce_buf.download(sizeof both);
    std::copy_n(reduce_buf.host(), sizeof both, reinterpret_cast<unsigned char*>(both));

    Row r;
    r.count = c.count;
    r.bytes = c.count * int64_t(elem(c));
    r.time_s = both[0] / c.world;
    r.algbw_gbps = r.time_s > 0 ? double(r.bytes) * 8 / r.time_s / 1e9 : 0;
    r.busbw_gbps = r.algbw_gbps * bus_factor(c.op, c.world);
    r.errors = std::llround(both[1]);
    return r;
}

// Sizes from min to max in x2 steps, each rounded down to a multiple of
// unit = world x element size (every op splits S evenly across the ranks).
std::vector<int64_t> bench_sizes(const BenchCommSettings& s, int64_t unit, std::string* note) {
    std::vector<int64_t> sizes;
    bool rounded = false;
    std::string dropped;
    for (int64_t b = s.min_bytes; b <= s.max_bytes; b *= 2) {
        int64_t r = b / unit * unit;
        rounded |= r != b;
        if (r == 0) {
            dropped += (dropped.empty() ? "" : ", ") + std::to_string(b);
        } else if (sizes.empty() || sizes.back() != r) {
            sizes.push_back(r);
        }
        if (b > s.max_bytes / 2) break;
    }
    ZT_CHECK(!sizes.empty(),
             "--max-bytes %lld is smaller than one element per rank: every size must be a "
             "multiple of world size x element size = %lld bytes; use --max-bytes >= %lld",
             (long long)s.max_bytes, (long long)unit, (long long)unit);
    if (rounded) {
        *note = strprintf(
            "sizes rounded down to a multiple of world size x element size = %lld "
            "bytes, so every rank holds the same number of elements",
            (long long)unit);
        if (!dropped.empty()) *note += "; dropped (below one element per rank): " + dropped;
    }
    return sizes;
}

std::string machine_description() {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    return strprintf("%s, %u cores", host, std::thread::hardware_concurrency());
}

void print_table_header(const Communicator& comm, CommOp op, const BenchCommSettings& s) {
    std::printf("#\n# bench-comm %s%s, dtype %s, backend %s, world size %d\n", comm_op_name(op),
                op == CommOp::all_gather ? "" : " (sum)", dtype_name(s.dtype), comm.backend_name(),
                comm.world_size());
    std::printf("# machine: %s; warmup %d, iters %d; S = %s\n", machine_description().c_str(),
                s.warmup, s.iters,
                op == CommOp::all_reduce       ? "the all-reduce buffer"
                : op == CommOp::reduce_scatter ? "the reduce-scatter input"
                                               : "the all-gather output");
    if (s.sim_bandwidth_gbps > 0 || s.sim_latency_us > 0)
        std::printf("# simulated network: %g Gbps (0 = unlimited), latency %g us per ring step\n",
                    s.sim_bandwidth_gbps, s.sim_latency_us);
    std::printf("# %13s %12s %11s %12s %12s %12s %12s %7s%s\n", "bytes", "count", "time(us)",
                "algbw(Gbps)", "busbw(Gbps)", "algbw(GB/s)", "busbw(GB/s)", "errors",
                s.sim_bandwidth_gbps > 0 ? "  busbw/sim" : "");
}

void print_table_row(const Row& r, const BenchCommSettings& s) {
    std::printf("  %13lld %12lld %11.1f %12.3f %12.3f %12.3f %12.3f %7lld", (long long)r.bytes,
                (long long)r.count, r.time_s * 1e6, r.algbw_gbps, r.busbw_gbps, r.algbw_gbps / 8,
                r.busbw_gbps / 8, (long long)r.errors);
    if (s.sim_bandwidth_gbps > 0) std::printf("  %9.3f", r.busbw_gbps / s.sim_bandwidth_gbps);
    std::printf("\n");
}

void print_json_row(const Communicator& comm, CommOp op, const Row& r) {
    nlohmann::ordered_json j;
    j["op"] = comm_op_name(op);
    j["comm"] = comm.backend_name();
    j["world_size"] = comm.world_size();
    j["bytes"] = r.bytes;
    j["time_s"] = r.time_s;
    j["algbw_gbps"] = r.algbw_gbps;
    j["busbw_gbps"] = r.busbw_gbps;
    j["errors"] = r.errors;
    std::printf("%s\n", j.dump().c_str());
}

void run_bench_comm(const BenchCommFlags& flags) {
    BenchCommSettings s = parse_flags(flags);

    if (s.nproc > 1 && !under_launcher()) {
        // Start the ranks (through mpirun, or directly for tcp) and hand back their exit
        // status.
        std::vector<std::string> args = own_command_line();
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::fflush(stdout);
        std::unique_ptr<NetnsNetwork> net =
            s.netns ? std::make_unique<NetnsNetwork>(s.nproc, s.netns_link) : nullptr;
        const LaunchNetwork launch_net = net ? net->launch_network() : LaunchNetwork{};
        int status = launch_local_ranks(s.nproc, int(args.size()), argv.data(), {},
                                        net ? &launch_net : nullptr, s.comm);
        net.reset();  // std::exit runs no destructors of this frame
        std::fflush(stdout);
        std::fflush(stderr);
        std::exit(status);
    }
    RankInfo ranks = discover_ranks();
    ZT_CHECK(s.nproc == 0 || s.nproc == ranks.world,
             "--nproc %d, but the launcher (%s) started %d ranks; leave out --nproc under a "
             "launcher, or make them agree",
             s.nproc, ranks.source.c_str(), ranks.world);

    CommOptions opt;
    opt.backend = !s.comm.empty() ? s.comm : default_comm_backend(ranks);
    opt.sim_bandwidth_gbps = s.sim_bandwidth_gbps;
    opt.sim_latency_us = s.sim_latency_us;
    opt.timeout_s = s.timeout_s;
    std::unique_ptr<Communicator> comm = make_communicator(opt);
    set_error_rank(comm->rank());
    bool leader = comm->rank() == 0;

    int64_t unit = int64_t(comm->world_size()) * int64_t(dtype_size(s.dtype));
    std::string note;
    std::vector<int64_t> sizes = bench_sizes(s, unit, &note);
    if (leader && !note.empty()) {
        if (s.json) {
            std::fprintf(stderr, "zerotrain: note: %s\n", note.c_str());
        } else {
            std::printf("# note: %s\n", note.c_str());
        }
    }

    bool on_device = opt.backend == "nccl";
    size_t max_bytes = size_t(sizes.back());
    std::unique_ptr<BenchBuffer> a, b, reduce_buf;
    try {
        a = std::make_unique<BenchBuffer>(max_bytes, on_device);
        b = std::make_unique<BenchBuffer>(max_bytes, on_device);
        reduce_buf = std::make_unique<BenchBuffer>(2 * sizeof(double), on_device);
    } catch (const std::bad_alloc&) {
        ZT_FAIL(
            "--max-bytes %lld: cannot allocate the 2 x %lld bytes each rank needs; use a "
            "smaller --max-bytes",
            (long long)max_bytes, (long long)max_bytes);
    }

    int64_t total_errors = 0;
    for (CommOp op : s.ops) {
        if (leader && !s.json) print_table_header(*comm, op, s);
        double busbw_sum = 0;
        for (int64_t bytes : sizes) {
            Case c{op, bytes / int64_t(dtype_size(s.dtype)), s.dtype, comm->rank(),
                   comm->world_size()};
            Row r = measure(*comm, c, s, *a, *b, *reduce_buf);
            total_errors += r.errors;
            busbw_sum += r.busbw_gbps;
            if (!leader) continue;
            if (s.json) {
                print_json_row(*comm, op, r);
            } else {
                print_table_row(r, s);
            }
            std::fflush(stdout);
        }
        if (leader && !s.json)
            std::printf("# avg busbw over %zu sizes: %.3f Gbps (%.3f GB/s)\n", sizes.size(),
                        busbw_sum / double(sizes.size()), busbw_sum / double(sizes.size()) / 8);
    }
    if (leader && !s.json)
        std::printf("# wrong elements, summed over ranks: %lld %s\n", (long long)total_errors,
                    total_errors == 0 ? "(OK)" : "(FAILED)");
    std::fflush(stdout);
    comm->barrier();
    ZT_CHECK(total_errors == 0,
             "bench-comm: %lld wrong elements in the results of backend %s (summed over %d "
             "ranks; see the errors column)",
             (long long)total_errors, comm->backend_name(), comm->world_size());
}

}  // namespace

void add_bench_comm_command(CLI::App& app) {
    auto flags = std::make_shared<BenchCommFlags>();
    CLI::App* cmd = app.add_subcommand(
        "bench-comm",
        "measure collective bandwidth like nccl-tests: time, algbw and busbw per size, every "
        "result verified");
    // The values are strings, parsed in parse_flags(); type_name says what
    // each one holds.
    cmd->add_option("--op", flags->op, "all_reduce, reduce_scatter, all_gather or all")
        ->type_name("OP")
        ->required();
    cmd->add_option("--nproc", flags->nproc,
                    "start N local ranks (through mpirun; directly with --comm tcp or without MPI; "
                    "not needed under a launcher)")
        ->type_name("INT");
    cmd->add_option("--comm", flags->comm,
                    "local, mpi, ring, tcp (sockets, no MPI), or nccl (GPU-only: a build with "
                    "CUDA and NCCL); default: local for one rank, else mpi (tcp without MPI or "
                    "under torchrun)")
        ->type_name("BACKEND");
    cmd->add_option("--dtype", flags->dtype, "f32 or bf16")
        ->type_name("DTYPE")
        ->capture_default_str();
    cmd->add_option("--min-bytes", flags->min_bytes,
                    "smallest S in bytes (K, M, G suffixes: powers of 1024)")
        ->type_name("SIZE")
        ->capture_default_str();
    cmd->add_option("--max-bytes", flags->max_bytes, "largest S in bytes; sizes double from min")
        ->type_name("SIZE")
        ->capture_default_str();
    cmd->add_option("--warmup", flags->warmup, "untimed iterations per size")
        ->type_name("INT")
        ->capture_default_str();
    cmd->add_option("--iters", flags->iters, "timed iterations per size")
        ->type_name("INT")
        ->capture_default_str();
    cmd->add_option("--sim-bandwidth-gbps", flags->sim_bandwidth_gbps,
                    "simulate a network of this many gigabits per second (0 = off)")
        ->type_name("FLOAT")
        ->capture_default_str();
    cmd->add_option("--sim-latency-us", flags->sim_latency_us,
                    "simulated latency per ring step in microseconds")
        ->type_name("FLOAT")
        ->capture_default_str();
    cmd->add_flag("--netns", flags->netns,
                  "run the --nproc ranks in private network namespaces, MPI over TCP links "
                  "between them (needs root and iproute2)");
    cmd->add_option("--netns-bandwidth-gbps", flags->netns_bandwidth_gbps,
                    "with --netns: shape each rank's link to this many gigabits per second "
                    "(token bucket; 0 = not shaped)")
        ->type_name("FLOAT")
        ->capture_default_str();
    cmd->add_option("--netns-latency-us", flags->netns_latency_us,
                    "with --netns: delay each packet this long (netem, where the kernel has it)")
        ->type_name("FLOAT")
        ->capture_default_str();
    cmd->add_option("--comm-timeout-s", flags->timeout_s,
                    "abort all ranks when one operation waits longer (0 = never)")
        ->type_name("SECONDS")
        ->capture_default_str();
    cmd->add_flag("--json", flags->json,
                  "one JSON row per line: op, comm, world_size, bytes, time_s, algbw_gbps, "
                  "busbw_gbps, errors");
    cmd->callback([flags] { run_bench_comm(*flags); });
}

}  // namespace zt::cli
