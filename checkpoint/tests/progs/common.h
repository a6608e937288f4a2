/* Helpers for the test programs. Each program prints "ready ..." once set up, blocks until
 * the test writes a line to its stdin (that happens only after restore), then checks its own
 * state and prints what it found, one "name ok|bad ..." line per check. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* FNV-1a over a buffer. */
static inline uint64_t fnv(const void *p, size_t n) {
    const unsigned char *c = p;
    uint64_t s = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) s = (s ^ c[i]) * 1099511628211ULL;
    return s;
}

/* Closes fds inherited from the test runner (cargo's jobserver pipes and the like). */
static inline void close_inherited(void) { syscall(SYS_close_range, 3, ~0U, 0); }

static inline void ready(const char *extra) {
    printf("ready %d %s\n", getpid(), extra ? extra : "");
    fflush(stdout);
}

/* Blocks until the test says go (a line on stdin); returns 0 on success. */
static inline int wait_go(void) {
    char buf[16];
    return read(0, buf, sizeof buf) > 0 ? 0 : -1;
}

static inline void check(const char *name, int ok) {
    printf("%s %s\n", name, ok ? "ok" : "bad");
    fflush(stdout);
}
