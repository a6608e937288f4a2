/* pidfds: of itself, of a live child (non-blocking), of a zombie child. After restore each
 * must refer to the same process: fdinfo names it, the child is killed and waited for through
 * its pidfd, the zombie's status is read through its pidfd. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }

static int names(int fd, pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    int ok = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        int p;
        if (sscanf(buf, "Pid: %d", &p) == 1) ok = p == pid;
    }
    if (f) fclose(f);
    return ok;
}

int main(void) {
    close_inherited();
    pid_t live = fork();
    if (live == 0)
        for (;;) pause();
    pid_t dead = fork();
    if (dead == 0) _exit(9);
    int self = pidfd_open(getpid(), 0);
    int lfd = pidfd_open(live, O_NONBLOCK);
    int dfd = pidfd_open(dead, 0);
    siginfo_t si;
    if (self < 0 || lfd < 0 || dfd < 0 || waitid(P_PID, dead, &si, WEXITED | WNOWAIT)) return 2;
    ready(NULL);
    if (wait_go()) return 4;
    check("self", names(self, getpid()));
    check("live-flags", names(lfd, live) && (fcntl(lfd, F_GETFL) & O_NONBLOCK));
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    check("live-kill", syscall(SYS_pidfd_send_signal, lfd, SIGKILL, NULL, 0) == 0 &&
                           poll(&p, 1, 10000) == 1 &&
                           !waitid(P_PIDFD, lfd, &si, WEXITED) && si.si_pid == live &&
                           si.si_code == CLD_KILLED && si.si_status == SIGKILL);
    check("zombie", names(dfd, dead) && !waitid(P_PIDFD, dfd, &si, WEXITED) &&
                        si.si_pid == dead && si.si_code == CLD_EXITED && si.si_status == 9);
    return 0;
}
