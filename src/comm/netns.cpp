#include "comm/netns.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "comm/spawn.h"
#include "core/check.h"

namespace fs = std::filesystem;

namespace zt {

namespace {

constexpr const char* kSubnet = "10.231.0.0/24";
constexpr const char* kHubAddress = "10.231.0.254/24";
constexpr int kMaxRanks = 250;  // .1 to .250 of the /24, the hub at .254

// The program's path: on PATH, else in the sbin folders root's PATH has.
std::string find_program(const char* name) {
    std::string dirs = std::getenv("PATH") ? std::getenv("PATH") : "";
    dirs += ":/usr/sbin:/sbin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        const size_t colon = dirs.find(':', start);
        const std::string dir =
            dirs.substr(start, colon == std::string::npos ? colon : colon - start);
        if (!dir.empty()) {
            const std::string p = dir + "/" + name;
            if (::access(p.c_str(), X_OK) == 0) return p;
        }
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    return "";
}

struct CommandResult {
    int status = 0;
    std::string output;  // stdout and stderr
};

// Runs argv (argv[0] a path), returning its status and output.
CommandResult run_command(const std::vector<std::string>& args) {
    int pipe_fds[2];
    ZT_CHECK(::pipe2(pipe_fds, O_CLOEXEC) == 0, "netns: pipe failed: %s", std::strerror(errno));
    pid_t pid;
    try {
        pid = spawn_process(args, pipe_fds[1]);
    } catch (...) {
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        throw;
    }
    ::close(pipe_fds[1]);
    CommandResult r;
    char buf[512];
    for (;;) {
        const ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
        if (n > 0) r.output.append(buf, size_t(n));
        if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    ::close(pipe_fds[0]);
    r.status = wait_process(pid);
    while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == ' '))
        r.output.pop_back();
    return r;
}

std::string joined(const std::vector<std::string>& args) {
    std::string s;
    for (const std::string& a : args) s += (s.empty() ? "" : " ") + a;
    return s;
}

// Runs a setup command; a failure is an error quoting the command and what
// it said.
void must(const std::vector<std::string>& args) {
    const CommandResult r = run_command(args);
    ZT_USER_CHECK(r.status == 0, "netns: '%s' failed (exit status %d): %s", joined(args).c_str(),
                  r.status, r.output.c_str());
}

bool process_alive(pid_t pid) {
    return ::kill(pid, 0) == 0 || errno == EPERM;
}

// Namespaces "zt<pid>h" / "zt<pid>r<k>" whose launcher is gone.
void delete_stale_namespaces(const std::string& ip) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() < 4 || name.compare(0, 2, "zt") != 0) continue;
        const size_t end = name.find_first_not_of("0123456789", 2);
        if (end == 2 || end == std::string::npos || (name[end] != 'h' && name[end] != 'r'))
            continue;
        const pid_t pid = pid_t(std::stol(name.substr(2, end - 2)));
        if (!process_alive(pid)) run_command({ip, "netns", "delete", name});
    }
}

// tc's rate and burst for a bandwidth: a bucket of 2 ms of traffic (at least
// 32 KiB), so a fast link is not held below its rate by the timer's
// granularity and a slow one does not pass a large burst unshaped.
std::vector<std::string> tbf_args(double gbps) {
    const double bytes_per_s = gbps * 1e9 / 8;
    const long long burst = std::max<long long>(32 << 10, (long long)(bytes_per_s * 2e-3));
    return {"tbf",     "rate", strprintf("%.0fbit", gbps * 1e9), "burst", std::to_string(burst),
            "latency", "200ms"};
}

}  // namespace

void check_shaped_link(const ShapedLink& link, const char* bandwidth_flag,
                       const char* latency_flag) {
    ZT_USER_CHECK(std::isfinite(link.bandwidth_gbps) && link.bandwidth_gbps >= 0,
                  "%s %g: expected gigabits per second >= 0 (0: not shaped)", bandwidth_flag,
                  link.bandwidth_gbps);
    ZT_USER_CHECK(std::isfinite(link.latency_us) && link.latency_us >= 0,
                  "%s %g: expected microseconds >= 0", latency_flag, link.latency_us);
}

NetnsNetwork::NetnsNetwork(int ranks, const ShapedLink& link) : link_(link) {
    ZT_USER_CHECK(ranks >= 2 && ranks <= kMaxRanks,
                  "netns: %d ranks: a shaped network joins 2 to %d ranks", ranks, kMaxRanks);
    ZT_USER_CHECK(::geteuid() == 0,
                  "netns: making network namespaces needs root (this process runs as uid %d); "
                  "run as root, or use the simulated network (--sim-bandwidth-gbps)",
                  int(::geteuid()));
    ip_ = find_program("ip");
    tc_ = find_program("tc");
    ZT_USER_CHECK(!ip_.empty() && !tc_.empty(),
                  "netns: needs iproute2's ip and tc (not found on PATH, /usr/sbin or /sbin): "
                  "apt-get install iproute2, or use the simulated network (--sim-bandwidth-gbps)");
    delete_stale_namespaces(ip_);
    const std::string tag = "zt" + std::to_string(::getpid());
    hub_ = tag + "h";
    try {
        const CommandResult made = run_command({ip_, "netns", "add", hub_});
        ZT_USER_CHECK(made.status == 0,
                      "netns: cannot make a network namespace (%s); this needs CAP_SYS_ADMIN and "
                      "CAP_NET_ADMIN (a container may withhold them): use the simulated network "
                      "(--sim-bandwidth-gbps)",
                      made.output.c_str());
        must({ip_, "-n", hub_, "link", "add", "br0", "type", "bridge"});
        must({ip_, "-n", hub_, "addr", "add", kHubAddress, "dev", "br0"});
        must({ip_, "-n", hub_, "link", "set", "br0", "up"});
        for (int k = 0; k < ranks; k++) {
            const std::string ns = tag + "r" + std::to_string(k),
                              hub_end = "vh" + std::to_string(k);
            must({ip_, "netns", "add", ns});
            ranks_.push_back(ns);
            must({ip_, "link", "add", hub_end, "netns", hub_, "type", "veth", "peer", "name",
                  "eth0", "netns", ns});
            must({ip_, "-n", hub_, "link", "set", hub_end, "master", "br0", "up"});
            must({ip_, "-n", ns, "addr", "add", strprintf("10.231.0.%d/24", k + 1), "dev", "eth0"});
            must({ip_, "-n", ns, "link", "set", "eth0", "up"});
            must({ip_, "-n", ns, "link", "set", "lo", "up"});
            std::vector<std::string> shape = {ip_,     "netns", "exec", ns,     tc_,
                                              "qdisc", "add",   "dev",  "eth0", "root"};
            if (link.latency_us > 0) {
                std::vector<std::string> delay = shape;
                delay.insert(delay.end(), {"handle", "1:", "netem", "delay",
                                           strprintf("%.0fus", link.latency_us)});
                const CommandResult r = run_command(delay);
                ZT_USER_CHECK(r.status == 0,
                              "netns: --netns-latency-us %g needs the kernel's netem qdisc "
                              "(sch_netem), which this kernel refused (%s); use --netns-latency-us "
                              "0, or the simulated latency (--sim-latency-us)",
                              link.latency_us, r.output.c_str());
                shape = {ip_,   "netns", "exec",   ns,   tc_,      "qdisc", "add",
                         "dev", "eth0",  "parent", "1:", "handle", "2:"};
            }
            if (link.bandwidth_gbps > 0) {
                const std::vector<std::string> tbf = tbf_args(link.bandwidth_gbps);
                shape.insert(shape.end(), tbf.begin(), tbf.end());
                must(shape);
            }
        }
    } catch (...) {
        tear_down();
        throw;
    }
}

NetnsNetwork::~NetnsNetwork() {
    tear_down();
}

void NetnsNetwork::tear_down() noexcept {
    try {
        for (const std::string& ns : ranks_) run_command({ip_, "netns", "delete", ns});
        if (!hub_.empty()) run_command({ip_, "netns", "delete", hub_});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zerotrain: warning: netns: deleting the namespaces failed: %s\n",
                     e.what());
    }
    ranks_.clear();
    hub_.clear();
}

LaunchNetwork NetnsNetwork::launch_network() const {
    LaunchNetwork n;
    n.mpirun_prefix = {ip_, "netns", "exec", hub_};
    n.mpirun_args = {"--mca", "btl",   "self,tcp",           "--mca", "btl_tcp_if_include",
                     kSubnet, "--mca", "oob_tcp_if_include", kSubnet};
    for (const std::string& ns : ranks_) n.rank_prefix.push_back({ip_, "netns", "exec", ns});
    // The ranks reach mpirun's PMIx server over the bridge, not loopback.
    n.env = {std::string("PMIX_MCA_ptl_tcp_if_include=") + kSubnet,
             "PMIX_MCA_ptl_tcp_remote_connections=1"};
    n.description = strprintf(
        "netns: %zu ranks in private network namespaces, TCP over links shaped to %s%s",
        ranks_.size(),
        link_.bandwidth_gbps > 0 ? strprintf("%g Gbit/s per rank", link_.bandwidth_gbps).c_str()
                                 : "no rate limit",
        link_.latency_us > 0 ? strprintf(", %g us delay", link_.latency_us).c_str() : "");
    return n;
}

}  // namespace zt
