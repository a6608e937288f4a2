/* Memory of every kind: private and shared anonymous (shared with a child), private file
 * mapping with written pages, shared file mapping, a read-only area with data, guard pages
 * (PROT_NONE), brk growth, the vdso (same address, clock_gettime works), MADV_DONTFORK.
 * argv[1] is a scratch directory for the files. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <time.h>
#include <setjmp.h>
#include <errno.h>
#include <signal.h>

static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    char path[512];
    /* private file mapping, some pages written */
    snprintf(path, sizeof path, "%s/private.bin", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 16; i++) { char page[4096]; memset(page, 'a' + i, sizeof page); if (write(fd, page, 4096) != 4096) return 2; }
    unsigned char *priv = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    priv[3 * 4096] = 'X';
    priv[9 * 4096 + 7] = 'Y';
    /* shared file mapping */
    snprintf(path, sizeof path, "%s/shared.bin", argv[1]);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (ftruncate(fd, 8192)) return 2;
    char *shf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    strcpy(shf + 4096, "shared-file");
    /* shared anonymous, shared with a child */
    volatile char *sha = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy((char *)sha + 4096, "before");
    int p2c[2];
    if (pipe(p2c)) return 2;
    pid_t child = fork();
    if (child == 0) {
        char c;
        if (read(p2c[0], &c, 1) != 1) _exit(3);
        strcpy((char *)sha + 8192, "from-child");
        _exit(strcmp((char *)sha + 4096, "after") == 0 ? 0 : 1);
    }
    /* read-only area with data, guard pages around an area */
    char *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(ro, "read-only");
    mprotect(ro, 4096, PROT_READ);
    char *guarded = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(guarded, 4096, PROT_NONE);
    mprotect(guarded + 2 * 4096, 4096, PROT_NONE);
    strcpy(guarded + 4096, "inside");
    /* brk */
    char *brk0 = sbrk(0);
    char *grown = sbrk(1 << 20);
    memset(grown, 'b', 1 << 20);
    /* an area that must not be inherited */
    char *nofork = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(nofork, 4096, MADV_DONTFORK);
    unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ready(NULL);
    char *brk1 = sbrk(0);
    if (wait_go()) return 3;
    check("private-file", priv[3 * 4096] == 'X' && priv[9 * 4096 + 7] == 'Y' && priv[0] == 'a' && priv[15 * 4096] == 'p' && priv[3 * 4096 + 1] == 'd');
    strcpy((char *)sha + 4096, "after");
    if (write(p2c[1], "x", 1) != 1) return 4;
    int st;
    waitpid(child, &st, 0);
    check("shared-anon", WIFEXITED(st) && WEXITSTATUS(st) == 0 && strcmp((char *)sha + 8192, "from-child") == 0);
    check("shared-file", strcmp(shf + 4096, "shared-file") == 0);
    strcpy(shf, "written-after");
    msync(shf, 8192, MS_SYNC);
    check("read-only-data", strcmp(ro, "read-only") == 0);
    signal(SIGSEGV, on_segv);
    int faulted = 0;
    if (sigsetjmp(jb, 1) == 0) { ro[0] = 'z'; } else { faulted = 1; }
    check("read-only-prot", faulted);
    faulted = 0;
    if (sigsetjmp(jb, 1) == 0) { guarded[0] = 'z'; } else { faulted = 1; }
    check("guard", faulted && strcmp(guarded + 4096, "inside") == 0);
    /* the kernel's program break is where the process left it, and it still grows */
    char *kernel_brk = (char *)syscall(SYS_brk, 0);
    void *more = sbrk(4096);
    check("brk", brk1 >= brk0 + (1 << 20) && kernel_brk == brk1 && grown[12345] == 'b' && more != (void *)-1);
    check("vdso-address", getauxval(AT_SYSINFO_EHDR) == vdso);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    check("vdso-clock", t1.tv_sec > t0.tv_sec || (t1.tv_sec == t0.tv_sec && t1.tv_nsec >= t0.tv_nsec));
    pid_t c2 = fork();
    if (c2 == 0) {
        faulted = 0;
        if (sigsetjmp(jb, 1) == 0) { nofork[0] = 1; } else { faulted = 1; }
        _exit(faulted ? 0 : 1);
    }
    waitpid(c2, &st, 0);
    check("dontfork", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}
