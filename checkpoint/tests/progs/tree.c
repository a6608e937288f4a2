/* A tree: root -> A (own process group) -> A1 (new session), root -> B (root's group).
 * Each child blocks on a pipe from its parent; after restore the root hears "go", tells its
 * children, each checks its pid, parent, group and session and reports on stdout. */
#include "common.h"
#include <sys/wait.h>

static int report(const char *name, pid_t want_pid, pid_t want_ppid, pid_t want_pgid, pid_t want_sid) {
    int ok = getpid() == want_pid && getppid() == want_ppid && getpgid(0) == want_pgid && getsid(0) == want_sid;
    printf("%s pid=%d ppid=%d pgid=%d sid=%d %s\n", name, getpid(), getppid(), getpgid(0), getsid(0), ok ? "ok" : "bad");
    fflush(stdout);
    return ok;
}

int main(void) {
    close_inherited();
    pid_t root = getpid(), root_pgid = getpgid(0), root_sid = getsid(0);
    int pa[2], pb[2], pa1[2], done[2];
    if (pipe(pa) || pipe(pb) || pipe(done)) return 2;
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        pid_t me = getpid();
        if (pipe(pa1)) return 2;
        pid_t a1 = fork();
        if (a1 == 0) {
            setsid();
            char c;
            if (read(pa1[0], &c, 1) != 1) _exit(3);
            _exit(report("A1", getpid(), me, getpid(), getpid()) ? 0 : 1);
        }
        char c;
        if (read(pa[0], &c, 1) != 1) _exit(3);
        if (write(pa1[1], "x", 1) != 1) _exit(3);
        int st;
        waitpid(a1, &st, 0);
        int ok = report("A", me, root, me, root_sid);
        printf("A1-exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
        fflush(stdout);
        _exit(ok && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1);
    }
    pid_t b = fork();
    if (b == 0) {
        char c;
        if (read(pb[0], &c, 1) != 1) _exit(3);
        _exit(report("B", getpid(), root, root_pgid, root_sid) ? 0 : 1);
    }
    /* wait until both subtrees exist before saying ready */
    usleep(100000);
    char info[64];
    snprintf(info, sizeof info, "a=%d b=%d", a, b);
    ready(info);
    if (wait_go()) return 3;
    if (write(pa[1], "x", 1) != 1 || write(pb[1], "x", 1) != 1) return 4;
    int sa, sb;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    report("root", root, getppid(), root_pgid, root_sid);
    check("children", WIFEXITED(sa) && WEXITSTATUS(sa) == 0 && WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    return 0;
}
