/* The program the migration benchmark moves: it holds MIB mebibytes of anonymous memory (all
 * written once) and keeps dirtying pages spread over all of it at RATE MB/s, counting 4096
 * bytes per page written (one byte each, at pages an odd stride apart, so that consecutive
 * writes land all over the area, never in one block). It works in ticks of about 1 ms,
 * timestamps every tick and keeps the largest gap between two ticks: how long it was stopped,
 * as the program itself sees it.
 *
 * argv: MIB RATE REPORT_PATH. On SIGUSR1 it replaces REPORT_PATH (write + rename) with
 *   report SEQ max_gap_us G ticks N dirtied_mb D seconds S
 * about the window since the previous report, then starts a new window. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define TICK_NS 1000000L

static volatile sig_atomic_t report_asked;

static void on_usr1(int sig) {
    (void)sig;
    report_asked = 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

struct window {
    unsigned long seq, ticks;
    double start, max_gap, dirtied;
};

static void report(const char *path, struct window *w, double t) {
    char tmp[4096], line[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(line, sizeof line, "report %lu max_gap_us %.0f ticks %lu dirtied_mb %.1f seconds %.3f\n",
                     w->seq, w->max_gap * 1e6, w->ticks, w->dirtied / 1e6, t - w->start);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) || rename(tmp, path)) {
        perror("writer: report");
        exit(1);
    }
    *w = (struct window){.seq = w->seq + 1, .start = t};
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: writer MIB RATE_MB_S REPORT_PATH\n");
        return 2;
    }
    size_t pages = strtoul(argv[1], NULL, 10) * 256;
    double rate = atof(argv[2]) * 1e6;
    unsigned char *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!pages || mem == MAP_FAILED) return 2;
    /* before the memory is filled: a report asked for as soon as it is resident must not kill us */
    signal(SIGUSR1, on_usr1);
    for (size_t p = 0; p < pages; p++) memset(mem + p * PAGE, (int)(p & 0xff), PAGE);
    size_t stride = 2654435761u % pages;
    while (gcd(stride, pages) != 1) stride++;
    printf("ready\n");
    fflush(stdout);

    struct window w = {.start = now()};
    double prev = w.start, budget = 0;
    size_t cursor = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_nsec += TICK_NS;
        if (next.tv_nsec >= 1000000000L) next.tv_sec++, next.tv_nsec -= 1000000000L;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        double t = now(), gap = t - prev;
        prev = t;
        w.ticks++;
        if (gap > w.max_gap) w.max_gap = gap;
        /* at most 10 ticks' worth after a stall: the rate holds on average, without a burst */
        budget += rate * (gap < 0.01 ? gap : 0.01);
        for (; budget >= PAGE; budget -= PAGE, w.dirtied += PAGE) {
            cursor = (cursor + stride) % pages;
            mem[cursor * PAGE + (w.ticks & (PAGE - 1))]++;
        }
        /* after a stall, tick on from now instead of catching up with the missed ticks */
        if (t * 1e9 > (double)next.tv_sec * 1e9 + next.tv_nsec + 10 * TICK_NS) clock_gettime(CLOCK_MONOTONIC, &next);
        if (report_asked) {
            report_asked = 0;
            report(argv[3], &w, t);
        }
    }
}
