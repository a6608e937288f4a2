/* A tree that keeps changing while it is pre-copied. The main thread forks a child about every
 * two milliseconds: each child rewrites a few pages of its copy of the memory, lives 0-16 ms
 * and exits 0 (every third child first execs /bin/sleep, which replaces its address space). The parent
 * reaps children as they end and rewrites one of its own pages each turn. A second thread
 * starts and joins short-lived threads all the time.
 * Commands on stdin (polled each turn):
 *   check  stop, reap every child, verify memory and exit statuses, print
 *          "memory ok|bad", "children ok|bad ...", "threads ok|bad", exit 0 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define PAGES 4096 /* 16 MiB */
static unsigned char *area;
static unsigned gen[PAGES];
static volatile int stop_threads;
static unsigned long threads_joined;

static void fill(unsigned char *a, int pg, unsigned g) {
    memset(a + (size_t)pg * 4096, (int)(pg * 31 + g * 7 + 1), 4096);
    a[(size_t)pg * 4096] = (unsigned char)g;
}

static void *short_lived(void *arg) {
    volatile unsigned long *x = arg;
    for (int i = 0; i < 1000; i++) (*x)++;
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    while (!stop_threads) {
        pthread_t t;
        unsigned long x = 0;
        if (pthread_create(&t, NULL, short_lived, &x) == 0) {
            pthread_join(t, NULL);
            if (x == 1000) threads_joined++;
        }
        usleep(300);
    }
    return NULL;
}

static void child(unsigned long n) {
    /* the child's own copy diverges from the parent's */
    for (int k = 0; k < 4; k++) fill(area, (int)((n * 7 + k) % PAGES), 9999);
    if (n % 3 == 0) {
        char *argv[] = {"sleep", "0.012", NULL};
        execv("/bin/sleep", argv);
        _exit(5);
    }
    struct timespec ts = {0, (long)(n % 5) * 4000000L};
    nanosleep(&ts, NULL);
    _exit(0);
}

int main(void) {
    close_inherited();
    area = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < PAGES; i++) fill(area, i, 0);
    pthread_t sp;
    if (pthread_create(&sp, NULL, spawner, NULL)) return 2;
    ready(NULL);
    unsigned long forked = 0, reaped = 0, bad_exit = 0, turn = 0;
    struct pollfd in = {0, POLLIN, 0};
    for (;;) {
        pid_t c = fork();
        if (c == 0) child(forked);
        if (c > 0) forked++;
        int pg = (int)((turn++ * 2654435761u) % PAGES);
        gen[pg]++;
        fill(area, pg, gen[pg]);
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
            reaped++;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad_exit++;
        }
        if (poll(&in, 1, 2) > 0) break;
    }
    stop_threads = 1;
    pthread_join(sp, NULL);
    int st;
    while (waitpid(-1, &st, 0) > 0) {
        reaped++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad_exit++;
    }
    int bad = 0;
    for (int pg = 0; pg < PAGES; pg++) {
        unsigned char v = (unsigned char)(pg * 31 + gen[pg] * 7 + 1);
        if (area[(size_t)pg * 4096] != (unsigned char)gen[pg] || area[(size_t)pg * 4096 + 4095] != v) bad++;
    }
    check("memory", !bad);
    printf("children %s forked=%lu reaped=%lu bad_exit=%lu\n",
           forked > 0 && forked == reaped && !bad_exit ? "ok" : "bad", forked, reaped, bad_exit);
    check("threads", threads_joined > 0);
    return 0;
}
