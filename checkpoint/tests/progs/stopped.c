/* A stopped (job-control) child with a thread that counts without end in memory shared with
 * the root: the child stops itself with SIGTSTP before the dump. After restore it must still
 * be stopped (state T, the count still; its parent told again, with SIGTSTP) until the root
 * sends SIGCONT, then go on. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>

static atomic_long *count;

static void *counter(void *arg) {
    (void)arg;
    for (;;) atomic_fetch_add(count, 1);
    return NULL;
}

static char state_of(const char *path) {
    char buf[512];
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    char *got = fgets(buf, sizeof buf, f);
    fclose(f);
    char *p = got ? strrchr(buf, ')') : NULL;
    return p && p[1] ? p[2] : '?';
}

/* Whether every thread of `pid` is stopped (state T). */
static int all_stopped(pid_t pid) {
    char path[320];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0, stopped = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", pid, e->d_name);
        n++;
        stopped += state_of(path) == 'T';
    }
    closedir(d);
    return n == 2 && stopped == n;
}

int main(void) {
    close_inherited();
    int out[2];
    count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pipe(out) || count == MAP_FAILED) return 2;
    pid_t child = fork();
    if (child == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, counter, NULL)) _exit(2);
        while (atomic_load(count) < 1000) ;
        raise(SIGTSTP);
        long at = atomic_load(count);
        while (atomic_load(count) == at) ; /* the thread counts again */
        _exit(write(out[1], "c", 1) == 1 ? 0 : 1);
    }
    int st;
    if (waitpid(child, &st, WUNTRACED) != child || !WIFSTOPPED(st)) return 3;
    ready(NULL);
    if (wait_go()) return 4;
    /* the restored child takes its stop before running code of its own: wait until both
     * threads show it, then the count must not move while they still do */
    int stopped = 0;
    for (time_t end = time(NULL) + 10; !stopped && time(NULL) < end;) stopped = all_stopped(child);
    long before = atomic_load(count);
    int still = all_stopped(child);
    char c = 0;
    check("still-stopped", stopped && still && atomic_load(count) == before);
    check("stop-reported", waitpid(child, &st, WUNTRACED) == child && WIFSTOPPED(st) &&
                               WSTOPSIG(st) == SIGTSTP);
    kill(child, SIGCONT);
    check("continued", read(out[0], &c, 1) == 1 && c == 'c' && atomic_load(count) > before);
    check("exited", waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}
