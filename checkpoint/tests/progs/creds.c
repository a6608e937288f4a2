/* Credentials: supplementary groups, gids and uids of an unprivileged user (the capability
 * sets are emptied by the uid change). */
#include "common.h"
#include <grp.h>

static int caps_empty(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int empty = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7)) empty = strstr(line, "0000000000000000") != NULL;
    if (f) fclose(f);
    return empty;
}

int main(void) {
    close_inherited();
    gid_t groups[2] = {100, 200};
    if (setgroups(2, groups) || setresgid(1001, 1002, 1003) || setresuid(1004, 1005, 1006)) return 2;
    ready(NULL);
    if (wait_go()) return 3;
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    gid_t g[8];
    int n = getgroups(8, g);
    check("uids", r == 1004 && e == 1005 && s == 1006);
    check("gids", gr == 1001 && ge == 1002 && gs == 1003);
    check("groups", n == 2 && g[0] == 100 && g[1] == 200);
    check("caps", caps_empty());
    return 0;
}
