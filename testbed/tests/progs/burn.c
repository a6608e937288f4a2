/* Burns MS milliseconds of CPU time (its own, so it takes longer on a busy CPU), then prints
 * "done <MS>" and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    double ms = argc > 1 ? atof(argv[1]) : 1000;
    volatile unsigned long x = 0;
    while (cpu_ms() < ms) {
        for (int i = 0; i < 100000; i++) x += i;
    }
    printf("done %.0f\n", ms);
    return 0;
}
