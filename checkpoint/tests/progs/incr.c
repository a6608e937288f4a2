/* Memory that changes between dumps (argv[1]: size in MiB, default 32; argv[2] "reserve":
 * map the area without touching it, for the benchmark's reference). Commands on stdin:
 *   w N   rewrite N pages (spread over the area), print "done"
 *   fds   print the number of open fds
 *   check verify every page against the expected pattern, print "memory ok|bad", exit
 * The expected contents are derived from a per-page generation counter kept in memory too. */
#include "common.h"
#include <dirent.h>
#include <sys/mman.h>

static int PAGES = 8192; /* 32 MiB */
static unsigned char *area;
static unsigned *gen;

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

int main(int argc, char **argv) {
    close_inherited();
    if (argc > 1) PAGES = atoi(argv[1]) * 256;
    gen = calloc(PAGES, sizeof *gen);
    area = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (argc < 3 || strcmp(argv[2], "reserve"))
        for (int i = 0; i < PAGES; i++) fill(i);
    char info[64];
    snprintf(info, sizeof info, "%lx %lx", (unsigned long)area, (unsigned long)PAGES * 4096);
    ready(info);
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
                if (area[(size_t)pg * 4096] != (unsigned char)gen[pg] || area[(size_t)pg * 4096 + 4095] != v) {
                    if (!bad)
                        printf("first bad page %d at %p: gen %u, found %u/%u, want %u/%u\n", pg,
                               (void *)(area + (size_t)pg * 4096), gen[pg], area[(size_t)pg * 4096],
                               area[(size_t)pg * 4096 + 4095], (unsigned char)gen[pg], v);
                    bad++;
                }
            }
            if (bad) printf("bad pages %d\n", bad);
            check("memory", !bad);
            return 0;
        }
    }
    return 3;
}
