/* Zombies: children that exited with 0 and 3, were killed by SIGKILL and SIGSEGV, and one that
 * led a process group of its own. After restore each must be waited for with its status, and
 * the leader still in its group. */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(void) {
    close_inherited();
    pid_t kids[5];
    for (int i = 0; i < 5; i++) {
        kids[i] = fork();
        if (kids[i] < 0) return 2;
        if (kids[i] == 0) {
            switch (i) {
            case 0: _exit(0);
            case 1: _exit(3);
            case 2: raise(SIGKILL); break;
            case 3: signal(SIGSEGV, SIG_DFL); raise(SIGSEGV); break;
            case 4: setpgid(0, 0); _exit(7);
            }
            _exit(13);
        }
    }
    for (int i = 0; i < 5; i++) {
        siginfo_t si;
        if (waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT)) return 2;
    }
    ready(NULL);
    if (wait_go()) return 4;
    check("leader-group", getpgid(kids[4]) == kids[4]);
    int want[5][2] = {{0, 0}, {0, 3}, {SIGKILL, 0}, {SIGSEGV, 0}, {0, 7}};
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        int st;
        if (waitpid(kids[i], &st, WNOHANG) != kids[i]) { ok = 0; continue; }
        if (want[i][0]) ok &= WIFSIGNALED(st) && WTERMSIG(st) == want[i][0];
        else ok &= WIFEXITED(st) && WEXITSTATUS(st) == want[i][1];
    }
    check("statuses", ok);
    return 0;
}
