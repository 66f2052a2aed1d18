// Helpers for tests that run zerotrain jobs in the background and break
// them: the processes below a job (mpirun and its ranks), a job run in the
// background with its output in a file, and a small tmpfs to fill.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace zt_test {

inline double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

inline std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// The parent of a process, from /proc/PID/stat (0 when it is gone).
inline pid_t parent_of(pid_t pid) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return 0;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) != 2) return 0;
    return ppid;
}

// Alive: neither gone nor a zombie.
inline bool running(pid_t pid) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z' &&
           stat[paren + 2] != 'X';
}

// Every process below `root` (mpirun and the ranks).
inline std::vector<pid_t> descendants(pid_t root) {
    std::vector<pid_t> out;
    std::set<pid_t> tree = {root};
    bool grew = true;
    while (grew) {
        grew = false;
        for (const auto& e : std::filesystem::directory_iterator("/proc")) {
            pid_t pid = std::atoi(e.path().filename().c_str());
            if (pid <= 0 || tree.count(pid) || !tree.count(parent_of(pid))) continue;
            tree.insert(pid);
            out.push_back(pid);
            grew = true;
        }
    }
    return out;
}

// The running process below `root` whose environment says it is rank `rank`
// (mpirun's OMPI_COMM_WORLD_RANK, or the RANK that --nproc sets for --comm
// tcp); 0 when there is none.
inline pid_t rank_pid(pid_t root, int rank) {
    const std::string mpi = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
    const std::string direct = "RANK=" + std::to_string(rank);
    for (pid_t pid : descendants(root)) {
        if (!running(pid)) continue;
        std::ifstream env("/proc/" + std::to_string(pid) + "/environ");
        for (std::string var; std::getline(env, var, '\0');)
            if (var == mpi || var == direct) return pid;
    }
    return 0;
}

// A command (a zerotrain job) in the background, its output in a file. A
// failed test leaves nothing of it running.
class BackgroundRun {
  public:
    BackgroundRun(const std::string& command, const std::string& log) : log_(log) {
        pid_ = fork();
        if (pid_ == 0) {
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            std::string cmd = "exec " + command;
            execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
            std::_Exit(127);
        }
    }
    ~BackgroundRun() {
        if (pid_ > 0 && !reaped_) {
            for (pid_t p : descendants(pid_)) ::kill(p, SIGKILL);
            ::kill(pid_, SIGKILL);
            wait_exit(30);
        }
    }
    BackgroundRun(const BackgroundRun&) = delete;
    BackgroundRun& operator=(const BackgroundRun&) = delete;
    pid_t pid() const { return pid_; }
    std::string output() const { return read_text(log_); }
    bool exited() {
        if (reaped_) return true;
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        return reaped_;
    }
    // The exit status once it exited (128 + signal when one ended it; -1
    // after timeout_s).
    int wait_exit(double timeout_s) {
        const double t0 = now_s();
        while (!exited() && now_s() - t0 < timeout_s)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return reaped_ ? code_ : -1;
    }

  private:
    std::string log_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    int code_ = -1;
};

// A tmpfs mounted at parent/small while the object lives (root only):
// mounted() says whether it is, why_not() why not.
class SmallDisk {
  public:
    SmallDisk(const std::string& parent, const std::string& options) : path_(parent + "/small") {
        if (geteuid() != 0) {
            why_not_ = "mounting a small tmpfs needs root";
            return;
        }
        std::filesystem::create_directories(path_);
        if (mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
            why_not_ = "cannot mount a tmpfs (" + options + ") here: " + std::strerror(errno);
            return;
        }
        mounted_ = true;
    }
    ~SmallDisk() {
        if (mounted_) umount2(path_.c_str(), MNT_DETACH);
    }
    SmallDisk(const SmallDisk&) = delete;
    SmallDisk& operator=(const SmallDisk&) = delete;
    bool mounted() const { return mounted_; }
    const std::string& why_not() const { return why_not_; }
    const std::string& path() const { return path_; }
    // Mounted again with other options (more space): "" or the error.
    std::string remount(const std::string& options) {
        if (mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT, options.c_str()) != 0)
            return std::strerror(errno);
        return "";
    }

  private:
    std::string path_;
    std::string why_not_;
    bool mounted_ = false;
};

}  // namespace zt_test

// Skips the test in a build without MPI.
#define REQUIRE_MPI()                                              \
    do {                                                           \
        if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI"; \
    } while (0)

// Skips the test, with the reason, where the disk could not be mounted.
#define REQUIRE_SMALL_DISK(disk)                                 \
    do {                                                         \
        if (!(disk).mounted()) GTEST_SKIP() << (disk).why_not(); \
    } while (0)
