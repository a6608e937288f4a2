/* Process attributes, in a child of the root (a root's parent-death signal is refused):
 * oom_score_adj, child subreaper, personality, THP disabled, login uid; for each of its two
 * threads the scheduling policy and priority, nice value, CPU affinity, parent-death signal
 * and timer slack; non-root credentials with the dumpable flag set again afterwards (a change
 * of credentials clears it). After restore the child checks everything and exits. */
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int ncpu;
static pthread_barrier_t set_up, go_check;
static int thread_ok;

static int read_int(const char *path) {
    char buf[32] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? (int)strtol(buf, NULL, 10) : -1;
}

static int write_str(const char *path, const char *s) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int n = write(fd, s, strlen(s));
    close(fd);
    return n == (int)strlen(s) ? 0 : -1;
}

/* Sets this thread's scheduling, affinity to one CPU, parent-death signal and timer slack. */
static int set_thread(int policy, int prio, int nice, int cpu) {
    struct sched_param sp = {.sched_priority = prio};
    if (sched_setscheduler(0, policy, &sp)) return -1;
    if (policy == SCHED_OTHER || policy == SCHED_BATCH)
        if (setpriority(PRIO_PROCESS, gettid(), nice)) return -1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % ncpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static int thread_is(int policy, int prio, int nice, int cpu, int pdeath, unsigned long slack) {
    struct sched_param sp;
    cpu_set_t set;
    int sig = 0;
    int ok = sched_getscheduler(0) == policy && sched_getparam(0, &sp) == 0 &&
             sp.sched_priority == prio && sched_getaffinity(0, sizeof set, &set) == 0 &&
             CPU_COUNT(&set) == 1 && CPU_ISSET(cpu % ncpu, &set) &&
             prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == pdeath &&
             prctl(PR_GET_TIMERSLACK) == (int)slack;
    if (policy == SCHED_OTHER || policy == SCHED_BATCH)
        ok = ok && getpriority(PRIO_PROCESS, gettid()) == nice;
    if (!ok)
        printf("thread %d: policy %d prio %d nice %d cpus %d (cpu %d: %d) pdeath %d slack %d\n",
               gettid(), sched_getscheduler(0), sp.sched_priority,
               getpriority(PRIO_PROCESS, gettid()), CPU_COUNT(&set), cpu % ncpu,
               CPU_ISSET(cpu % ncpu, &set), sig, prctl(PR_GET_TIMERSLACK));
    return ok;
}

static void *second(void *arg) {
    (void)arg;
    if (set_thread(SCHED_BATCH, 0, 7, 1)) _exit(10);
    pthread_barrier_wait(&set_up); /* the main thread changes the credentials */
    pthread_barrier_wait(&set_up);
    if (prctl(PR_SET_PDEATHSIG, SIGUSR2) || prctl(PR_SET_TIMERSLACK, 200000)) _exit(11);
    pthread_barrier_wait(&set_up);
    pthread_barrier_wait(&go_check);
    thread_ok = thread_is(SCHED_BATCH, 0, 7, 1, SIGUSR2, 200000);
    return NULL;
}

static int child(int go_fd, int up_fd) {
    if (write_str("/proc/self/oom_score_adj", "345") || write_str("/proc/self/loginuid", "4321") ||
        prctl(PR_SET_CHILD_SUBREAPER, 1) || personality(ADDR_NO_RANDOMIZE) < 0 ||
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) || set_thread(SCHED_RR, 3, 0, 0) ||
        syscall(SYS_membarrier, 16 /* REGISTER_PRIVATE_EXPEDITED */, 0, 0))
        return 20;
    pthread_t t;
    pthread_barrier_init(&set_up, NULL, 2);
    pthread_barrier_init(&go_check, NULL, 2);
    if (pthread_create(&t, NULL, second, NULL)) return 21;
    pthread_barrier_wait(&set_up);
    /* glibc changes the credentials of every thread */
    if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000)) return 22;
    pthread_barrier_wait(&set_up);
    /* a real-time thread has no timer slack: the kernel keeps it at 0 */
    if (prctl(PR_SET_DUMPABLE, 1) || prctl(PR_SET_PDEATHSIG, SIGUSR1) ||
        prctl(PR_SET_TIMERSLACK, 100000) || prctl(PR_GET_TIMERSLACK) != 0)
        return 23;
    pthread_barrier_wait(&set_up);
    char c = 'u';
    if (write(up_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1) return 24;
    pthread_barrier_wait(&go_check);
    pthread_join(t, NULL);
    int sub = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    check("oom-score-adj", read_int("/proc/self/oom_score_adj") == 345);
    check("loginuid", read_int("/proc/self/loginuid") == 4321);
    check("child-subreaper", sub == 1);
    check("personality", personality(0xffffffff) == ADDR_NO_RANDOMIZE);
    check("thp-disable", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1);
    /* GET_REGISTRATIONS, then PRIVATE_EXPEDITED (EPERM unless registered) */
    check("membarrier", syscall(SYS_membarrier, 1 << 9, 0, 0) == 16 &&
                            syscall(SYS_membarrier, 8, 0, 0) == 0);
    check("dumpable", prctl(PR_GET_DUMPABLE) == 1 && getuid() == 1000);
    check("main-thread", thread_is(SCHED_RR, 3, 0, 0, SIGUSR1, 0));
    check("second-thread", thread_ok);
    return 0;
}

int main(void) {
    close_inherited();
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int go[2], up[2];
    if (pipe(go) || pipe(up)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        close(up[0]);
        _exit(child(go[0], up[1]));
    }
    close(go[0]);
    close(up[1]);
    char c;
    if (read(up[0], &c, 1) != 1) return 2;
    ready(NULL);
    if (wait_go()) return 3;
    if (write(go[1], "g", 1) != 1) return 4;
    int st;
    if (waitpid(pid, &st, 0) != pid) return 5;
    check("child-exit", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}
