/* Process state a restore would not bring back, to be refused by the dump (argv[1]):
 *   thread-creds   one thread has other uids than the process (a raw setresuid)
 *   root-pdeathsig the root has a parent-death signal
 *   deadline       a thread runs under SCHED_DEADLINE
 *   deleted-cwd    the working directory was removed (argv[2]: a directory to make and remove)
 *   netns          a child is in a network namespace of its own
 *   mseal          a mapping is sealed
 *   aio            an AIO context (its ring is a mapping of a deleted file)
 *   lease          a read lease on a file (argv[2]: the file, made)
 *   owner-outside  a pipe sends SIGIO to the root's parent
 *   clone-files    a child shares the root's fd table (CLONE_FILES)
 *   zombie-group   a zombie child in a process group whose leader was reaped
 *   scm-rights     an fd in flight (SCM_RIGHTS) in a stream socket pair
 *   session-member a grandchild in the session its parent made (setsid)
 * Prints "ready" with the pid the refusal names, then after the refused dump must still run. */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* struct sched_attr of the kernel (glibc 2.36 has no wrapper) */
struct sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};
#define SCHED_DEADLINE 6

static pthread_barrier_t b;
static int deadline;

static void *thread(void *arg) {
    (void)arg;
    if (deadline) {
        struct sched_attr a = {.size = sizeof a, .sched_policy = SCHED_DEADLINE,
                               .sched_runtime = 1000000, .sched_deadline = 10000000,
                               .sched_period = 10000000};
        if (syscall(SYS_sched_setattr, 0, &a, 0)) _exit(10);
    } else if (syscall(SYS_setresuid, 1000, 1000, 1000)) {
        _exit(11);
    }
    pthread_barrier_wait(&b);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    const char *kind = argv[1];
    char info[32];
    snprintf(info, sizeof info, "pid=%d", getpid());
    pid_t child = -1, grandchild = -1;
    if (!strcmp(kind, "thread-creds") || !strcmp(kind, "deadline")) {
        deadline = !strcmp(kind, "deadline");
        pthread_t t;
        pthread_barrier_init(&b, NULL, 2);
        if (pthread_create(&t, NULL, thread, NULL)) return 2;
        pthread_barrier_wait(&b);
    } else if (!strcmp(kind, "root-pdeathsig")) {
        if (prctl(PR_SET_PDEATHSIG, SIGUSR1)) return 2;
    } else if (!strcmp(kind, "deleted-cwd") && argc > 2) {
        if (mkdir(argv[2], 0700) || chdir(argv[2]) || rmdir(argv[2])) return 2;
    } else if (!strcmp(kind, "netns")) {
        int up[2];
        if (pipe(up)) return 2;
        child = fork();
        if (child == 0) {
            char c = unshare(CLONE_NEWNET) ? 'x' : 'u';
            if (write(up[1], &c, 1) != 1) _exit(3);
            for (;;) pause();
        }
        char c;
        if (read(up[0], &c, 1) != 1 || c != 'u') return 2;
        snprintf(info, sizeof info, "pid=%d", child);
    } else if (!strcmp(kind, "mseal")) {
        void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || syscall(462 /* mseal */, p, 4096, 0)) return 2;
    } else if (!strcmp(kind, "lease") && argc > 2) {
        int fd = open(argv[2], O_RDONLY | O_CREAT, 0600);
        if (fd < 0 || fcntl(fd, F_SETLEASE, F_RDLCK)) return 2;
    } else if (!strcmp(kind, "owner-outside")) {
        int p[2];
        if (pipe(p) || fcntl(p[0], F_SETOWN, getppid())) return 2;
    } else if (!strcmp(kind, "clone-files")) {
        /* a raw clone without a stack runs on a copy of ours, as fork does */
        child = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        if (child == 0)
            for (;;) pause();
        if (child < 0) return 2;
        snprintf(info, sizeof info, "pid=%d", child);
    } else if (!strcmp(kind, "zombie-group")) {
        /* a leader of its own group makes a sibling of it (CLONE_PARENT) in that group and
         * exits; reaped, it leaves the sibling's group without a leader */
        pid_t leader = fork();
        if (leader == 0) {
            if (setpgid(0, 0)) _exit(3);
            pid_t z = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
            if (z == 0) _exit(0);
            _exit(z < 0 ? 4 : 0);
        }
        int st;
        if (leader < 0 || waitpid(leader, &st, 0) != leader || !WIFEXITED(st) || WEXITSTATUS(st))
            return 2;
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT)) return 2;
        snprintf(info, sizeof info, "pid=%d", si.si_pid);
    } else if (!strcmp(kind, "session-member")) {
        int up[2];
        if (pipe(up)) return 2;
        child = fork();
        if (child == 0) {
            setsid();
            pid_t g = fork();
            if (g == 0)
                for (;;) pause();
            if (write(up[1], &g, sizeof g) != sizeof g) _exit(3);
            for (;;) pause();
        }
        if (read(up[0], &grandchild, sizeof grandchild) != sizeof grandchild) return 2;
        snprintf(info, sizeof info, "pid=%d", grandchild);
    } else if (!strcmp(kind, "scm-rights")) {
        int sv[2], one = 0;
        char cbuf[CMSG_SPACE(sizeof(int))] = {0};
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                           .msg_controllen = sizeof cbuf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &one, sizeof one);
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || sendmsg(sv[0], &m, 0) != 1) return 2;
    } else if (!strcmp(kind, "aio")) {
        unsigned long ctx = 0;
        if (syscall(SYS_io_setup, 8, &ctx)) return 2;
    } else {
        return 2;
    }
    ready(info);
    if (wait_go()) return 3;
    check("alive", 1);
    if (child > 0) kill(child, SIGKILL);
    if (grandchild > 0) kill(grandchild, SIGKILL);
    return 0;
}
