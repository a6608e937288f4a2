/* Copies IN to OUT one record at a time: every PERIOD_MS it reads the next 8-byte record of IN
   (the open file's offset says which) and appends "<i> <getpid()> <record>" to OUT (opened
   with O_APPEND, never closed or synced), then prints "<i> <getpid()>"; COUNT records, then
   exits 0 (2 if IN ended early). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: copier IN OUT COUNT PERIOD_MS\n");
        return 64;
    }
    int in = open(argv[1], O_RDONLY);
    int out = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (in < 0 || out < 0) {
        perror("open");
        return 1;
    }
    int count = atoi(argv[3]);
    int period_ms = atoi(argv[4]);
    struct timespec ts = {period_ms / 1000, (long)(period_ms % 1000) * 1000000L};
    for (int i = 0; i < count; i++) {
        char rec[8];
        if (read(in, rec, sizeof rec) != (ssize_t)sizeof rec)
            return 2;
        dprintf(out, "%d %d %.7s\n", i, (int)getpid(), rec);
        printf("%d %d\n", i, (int)getpid());
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    return 0;
}
