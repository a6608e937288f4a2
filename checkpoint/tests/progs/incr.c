/* Memory that changes between dumps. Commands on stdin, one per line:
 *   w N   rewrite N pages (spread over the area), print "done"
 *   fds   print the number of open fds
 *   check verify every page against the expected pattern, print "memory ok|bad", exit
 * The expected contents are derived from a per-page generation counter kept in memory too. */
#include "common.h"
#include <dirent.h>
#include <sys/mman.h>

#define PAGES 8192 /* 32 MiB */

static unsigned char *area;
static unsigned gen[PAGES];

static void fill(int pg) {
    unsigned char v = (unsigned char)(pg * 31 + gen[pg] * 7 + 1);
    memset(area + (size_t)pg * 4096, v, 4096);
    area[(size_t)pg * 4096] = (unsigned char)gen[pg];
}

static int count_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

int main(void) {
    close_inherited();
    area = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < PAGES; i++) fill(i);
    ready(NULL);
    char line[64];
    unsigned step = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'w') {
            int n = atoi(line + 2);
            for (int k = 0; k < n; k++) {
                int pg = (int)((step++ * 2654435761u) % PAGES);
                gen[pg]++;
                fill(pg);
            }
            printf("done\n");
            fflush(stdout);
        } else if (!strncmp(line, "fds", 3)) {
            printf("fds %d\n", count_fds());
            fflush(stdout);
        } else if (!strncmp(line, "check", 5)) {
            int bad = 0;
            for (int pg = 0; pg < PAGES; pg++) {
                unsigned char v = (unsigned char)(pg * 31 + gen[pg] * 7 + 1);
                bad |= area[(size_t)pg * 4096] != (unsigned char)gen[pg] || area[(size_t)pg * 4096 + 4095] != v;
            }
            check("memory", !bad);
            return 0;
        }
    }
    return 3;
}
