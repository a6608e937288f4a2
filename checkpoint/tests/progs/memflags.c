/* Mapping flags: one region each locked (mlock), locked on fault (mlock2 MLOCK_ONFAULT),
 * advised MADV_SEQUENTIAL, MADV_RANDOM, MADV_MERGEABLE, MADV_HUGEPAGE, mapped MAP_NORESERVE,
 * and a read-only shared mapping of a file opened for writing (argv[1]/shared-file), which
 * must still be allowed to become writable. After restore each region must show the VmFlags it had (soft-dirty aside) and the
 * contents it had. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define N 7
#define LEN (64 * 4096)

static char *regions[N];
static char before[N][256];

/* The VmFlags of the mapping at `addr` in /proc/self/smaps, without "sd". */
static void flags_of(char *addr, char *out, size_t n) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = s == (unsigned long)addr;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            char *tok = strtok(line + 8, " \n");
            while (tok) {
                if (strcmp(tok, "sd")) {
                    strncat(out, tok, n - strlen(out) - 2);
                    strcat(out, " ");
                }
                tok = strtok(NULL, " \n");
            }
            break;
        }
    }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    char path[512];
    snprintf(path, sizeof path, "%s/shared-file", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 2;
    char *shared = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED || close(fd)) return 2;
    for (int i = 0; i < N; i++) {
        int extra = i == 6 ? MAP_NORESERVE : 0;
        regions[i] = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
        if (regions[i] == MAP_FAILED) return 2;
        memset(regions[i], 'a' + i, LEN / 2);
    }
    if (mlock(regions[0], LEN) || syscall(SYS_mlock2, regions[1], LEN, 1 /* MLOCK_ONFAULT */) ||
        madvise(regions[2], LEN, MADV_SEQUENTIAL) || madvise(regions[3], LEN, MADV_RANDOM) ||
        madvise(regions[4], LEN, MADV_MERGEABLE) || madvise(regions[5], LEN, MADV_HUGEPAGE))
        return 3;
    for (int i = 0; i < N; i++) flags_of(regions[i], before[i], sizeof before[i]);
    ready(NULL);
    if (wait_go()) return 4;
    const char *names[N] = {"mlock", "mlock-onfault", "sequential", "random", "mergeable", "hugepage", "noreserve"};
    for (int i = 0; i < N; i++) {
        char now[256];
        flags_of(regions[i], now, sizeof now);
        int same = !strcmp(now, before[i]) && regions[i][0] == 'a' + i && regions[i][LEN / 2] == 0;
        if (!same) printf("%s: before [%s] now [%s]\n", names[i], before[i], now);
        check(names[i], same);
    }
    check("shared-may-write", !mprotect(shared, 4096, PROT_READ | PROT_WRITE) &&
                                  (shared[0] = 'w') == 'w');
    return 0;
}
