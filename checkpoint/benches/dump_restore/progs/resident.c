/* The process the dump/restore benchmark checkpoints, with ssi and with CRIU alike.
 *
 * argv: MIB [reserve]. Holds MIB mebibytes of anonymous memory, every page written with its own
 * pattern, and sleeps. With "reserve" the area is mapped but left untouched: the restore
 * references copy an image into it, paying the page faults a restore pays.
 *
 * Once ready it writes "ADDR LEN" (hex) on stdout. On SIGUSR1 it rewrites every tenth page,
 * spread over the whole area, and writes "rewrote N". Standard input and output are what the
 * benchmark gives it (/dev/null and a regular file), which both checkpointers handle. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t rewrite;

static void on_usr1(int sig) {
    (void)sig;
    rewrite = 1;
}

int main(int argc, char **argv) {
    /* fds inherited from cargo (jobserver pipes) are neither ours nor the checkpointers' business */
    syscall(SYS_close_range, 3, ~0U, 0);
    size_t pages = (argc > 1 ? strtoul(argv[1], NULL, 10) : 64) * 256;
    unsigned char *area = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return 2;
    if (argc < 3 || strcmp(argv[2], "reserve"))
        for (size_t p = 0; p < pages; p++) memset(area + p * 4096, (int)(p * 31 + 1), 4096);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    /* blocked outside sigsuspend, so that a signal between the check and the wait is not lost */
    sigprocmask(SIG_BLOCK, &usr1, &old);
    signal(SIGUSR1, on_usr1);
    printf("%lx %lx\n", (unsigned long)area, (unsigned long)(pages * 4096));
    fflush(stdout);
    unsigned round = 0;
    for (;;) {
        sigsuspend(&old);
        if (!rewrite) continue;
        rewrite = 0;
        round++;
        size_t n = pages / 10;
        /* an odd stride visits pages all over the area (the page count is a power of two) */
        for (size_t k = 0; k < n; k++) area[((k + round * n) * 2654435761u % pages) * 4096] += 1;
        printf("rewrote %zu\n", n);
        fflush(stdout);
    }
}
