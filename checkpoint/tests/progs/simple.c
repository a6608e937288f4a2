/* One process: heap and anonymous memory with a pattern, a counter on the stack. */
#include "common.h"
#include <sys/mman.h>

int main(void) {
    close_inherited();
    size_t n = 8 << 20;
    unsigned char *heap = malloc(n);
    for (size_t i = 0; i < n; i++) heap[i] = (unsigned char)(i * 7 + (i >> 12));
    unsigned char *anon = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < (1 << 20); i += 4096) anon[i] = (unsigned char)(i >> 12);
    uint64_t h1 = fnv(heap, n), h2 = fnv(anon, 1 << 20);
    volatile long counter = 41;
    ready(NULL);
    if (wait_go()) return 3;
    counter++;
    printf("pid %d ppid-ok %d\n", getpid(), getppid() > 0);
    check("heap", fnv(heap, n) == h1);
    check("anon", fnv(anon, 1 << 20) == h2);
    printf("counter %ld\n", counter);
    void *more = malloc(64 << 20); /* brk/mmap still work */
    memset(more, 1, 64 << 20);
    check("malloc", 1);
    return 0;
}
