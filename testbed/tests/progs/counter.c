/* Prints "<i> <getpid()>" every PERIOD_MS milliseconds, COUNT times, then exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 100;
    int period_ms = argc > 2 ? atoi(argv[2]) : 20;
    struct timespec ts = {period_ms / 1000, (long)(period_ms % 1000) * 1000000L};
    for (int i = 0; i < count; i++) {
        printf("%d %d\n", i, (int)getpid());
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    return 0;
}
