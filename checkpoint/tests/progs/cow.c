/* Memory shared copy-on-write after a fork, and droppable memory. The parent writes four
 * pages, forks; the child writes page 1 only. After restore the parent (root, so pagemap shows
 * page frames) checks that page 0 and 2 are still one frame in both processes, page 1 two
 * frames with their own contents, and that a MAP_DROPPABLE mapping is still droppable. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096
#define MAP_DROPPABLE_ 0x08

static uint64_t frame(pid_t pid, void *addr) {
    char path[64];
    uint64_t e = 0;
    snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, &e, 8, (uintptr_t)addr / PG * 8) != 8) e = 0;
    if (fd >= 0) close(fd);
    return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}

static char peek(pid_t pid, char *addr) {
    char path[64], c = 0;
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, &c, 1, (uintptr_t)addr) != 1) c = 0;
    if (fd >= 0) close(fd);
    return c;
}

static int has_flag(void *addr, const char *flag) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0, found = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = s == (unsigned long)addr;
        } else if (in && !strncmp(line, "VmFlags:", 8)) {
            char want[8];
            snprintf(want, sizeof want, " %s", flag);
            found = strstr(line, want) != NULL;
            break;
        }
    }
    if (f) fclose(f);
    return found;
}

int main(void) {
    close_inherited();
    char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *d = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_DROPPABLE_ | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || d == MAP_FAILED) return 2;
    memset(p, 'a', 4 * PG);
    memset(d, 'x', 2 * PG);
    int sync[2];
    if (pipe(sync)) return 2;
    pid_t child = fork();
    if (child == 0) {
        p[PG] = 'b';
        if (write(sync[1], "w", 1) != 1) _exit(2);
        for (;;) pause();
    }
    char c;
    if (child < 0 || read(sync[0], &c, 1) != 1) return 2;
    int before = frame(getpid(), p) && frame(getpid(), p) == frame(child, p);
    ready(NULL);
    if (wait_go()) return 3;
    check("shared-before", before);
    check("cow-shared", frame(getpid(), p) != 0 && frame(getpid(), p) == frame(child, p) &&
                            frame(getpid(), p + 2 * PG) == frame(child, p + 2 * PG));
    check("cow-private", frame(getpid(), p + PG) != frame(child, p + PG));
    check("contents", p[PG] == 'a' && peek(child, p + PG) == 'b' && peek(child, p) == 'a' &&
                          p[3 * PG] == 'a');
    check("droppable", has_flag(d, "dp"));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}
