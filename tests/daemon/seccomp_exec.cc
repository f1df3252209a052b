// seccomp_exec ERRNO PROGRAM [ARGS...]: runs PROGRAM under a seccomp filter
// that answers perf_event_open with ERRNO (as systemd-nspawn's and container
// runtimes' filters do) and allows everything else. Test helper.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: seccomp_exec ERRNO PROGRAM [ARGS...]\n");
    return 2;
  }
  const auto err = static_cast<unsigned>(std::atoi(argv[1]));
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_perf_event_open, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::fprintf(stderr, "seccomp_exec: cannot install the filter: %s\n", std::strerror(errno));
    return 2;
  }
  execv(argv[2], argv + 2);
  std::fprintf(stderr, "seccomp_exec: cannot run %s: %s\n", argv[2], std::strerror(errno));
  return 127;
}
