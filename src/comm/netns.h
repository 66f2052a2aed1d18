// A private, shaped network for `--nproc` ranks: the bytes really cross a
// throttled link.
//
// Topology: one network namespace per rank ("zt<pid>r<k>"), each with one
// veth interface eth0 (10.231.0.<k+1>/24), whose peer sits on a bridge in a
// hub namespace ("zt<pid>h", the bridge at 10.231.0.254). Each rank's eth0
// egress is shaped with a token bucket filter at the asked bandwidth, under
// a netem delay when a latency is asked (and the kernel has sch_netem). So
// every rank sends at most `bandwidth` bits per second, as on a switched
// network of links of that speed.
//
// mpirun runs in the hub namespace and each rank in its own, Open MPI forced
// onto TCP over those links (btl self,tcp; no shared memory), its PMIx server
// reachable from the ranks over the bridge. The addresses are the namespaces'
// own: nothing outside the namespaces the run made is touched. The
// namespaces (and with them their interfaces) are deleted when the object
// goes; namespaces that a killed launcher left behind are deleted the next
// time one is made.
#pragma once

#include <string>
#include <vector>

namespace zt {

struct ShapedLink {
    double bandwidth_gbps = 0;  // per rank, gigabits/s; 0 = not shaped
    double latency_us = 0;      // one-way delay per packet; 0 = none
};

// How launch_local_ranks starts mpirun and each rank inside a network.
struct LaunchNetwork {
    std::vector<std::string> mpirun_prefix;             // runs mpirun (e.g. ip netns exec HUB)
    std::vector<std::string> mpirun_args;               // added after mpirun's own options
    std::vector<std::vector<std::string>> rank_prefix;  // runs rank k
    std::vector<std::string> env;                       // NAME=VALUE for mpirun and the ranks
    std::string description;                            // for the launcher's first line
};

class NetnsNetwork {
  public:
    // Makes the namespaces, links and shaping for `ranks` ranks. Refuses
    // (zt::Error) without root, without iproute2 (ip, tc), where namespaces
    // cannot be made, and a latency where the kernel has no netem, each with
    // what to do instead.
    NetnsNetwork(int ranks, const ShapedLink& link);
    ~NetnsNetwork();
    NetnsNetwork(const NetnsNetwork&) = delete;
    NetnsNetwork& operator=(const NetnsNetwork&) = delete;

    LaunchNetwork launch_network() const;

  private:
    void tear_down() noexcept;

    std::string ip_, tc_;
    std::string hub_;
    std::vector<std::string> ranks_;
    ShapedLink link_;
};

// The flags' link, checked: bandwidth and latency >= 0 and finite.
void check_shaped_link(const ShapedLink& link, const char* bandwidth_flag,
                       const char* latency_flag);

}  // namespace zt
