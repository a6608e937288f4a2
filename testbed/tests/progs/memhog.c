/* Holds MIB mebibytes of anonymous memory, all touched; prints "ready" then "tick <i>" every
 * 100 ms. With REWRITE_PERCENT > 0 it keeps rewriting that share of its pages, cycling
 * through them, as fast as it can between ticks. Runs until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    int rewrite = argc > 2 ? atoi(argv[2]) : 0;
    size_t len = mib << 20, pages = len / 4096;
    unsigned char *mem = malloc(len);
    if (!mem) return 2;
    for (size_t p = 0; p < pages; p++) memset(mem + p * 4096, (int)(p & 0xff), 4096);
    printf("ready\n");
    fflush(stdout);
    size_t hot = pages * (size_t)rewrite / 100, cursor = 0;
    for (unsigned long tick = 0;; tick++) {
        double until = now() + 0.1;
        if (hot) {
            while (now() < until) {
                for (int k = 0; k < 64; k++) {
                    mem[(cursor % hot) * 4096 + (tick & 4095)] ^= 1;
                    cursor++;
                }
            }
        } else {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        printf("tick %lu\n", tick);
        fflush(stdout);
    }
}
