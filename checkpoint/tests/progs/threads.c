/* Threads: each has TLS, its own signal mask and thread id; one keeps a pattern in ymm
 * registers while spinning (xsave state), one blocks in a condition wait. After restore each
 * checks, rseq must still be registered (re-registering gives EBUSY), and all are joined. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <errno.h>
#include <sys/rseq.h>
#include <stdatomic.h>

static __thread long tls = 0;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go = 0;
static atomic_int spin_stop = 0;
static pid_t tids[3];
static atomic_int started = 0;

static int rseq_registered(void) {
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    long r = syscall(SYS_rseq, area, 32, 0, RSEQ_SIG); /* glibc 2.36 registers 32 bytes */
    return r == -1 && errno == EBUSY;
}

static void *waiter(void *arg) {
    long id = (long)arg;
    tls = 1000 + id;
    tids[id] = gettid();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + (int)id);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    atomic_fetch_add(&started, 1);
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    int ok = tls == 1000 + id && gettid() == tids[id] && sigismember(&now, SIGRTMIN + (int)id) &&
             !sigismember(&now, SIGRTMIN + 1 - (int)id) && rseq_registered() && sched_getcpu() >= 0;
    printf("thread%ld tid=%d %s\n", id, gettid(), ok ? "ok" : "bad");
    fflush(stdout);
    return (void *)(long)ok;
}

static void *spinner(void *arg) {
    (void)arg;
    tls = 7;
    tids[2] = gettid();
    atomic_fetch_add(&started, 1);
    /* vector registers hold a pattern for the whole loop (ymm2/ymm3 with AVX, else xmm2/xmm3);
     * the loop only reads memory, so only a correct xsave restore keeps them */
    int bad = 0, avx = __builtin_cpu_supports("avx");
    double in[4] = {1.5, -2.25, 3.125, 1e300};
    double out[4];
    if (avx) {
        __asm__ volatile("vbroadcastsd %0, %%ymm3" ::"m"(in[3]) : "xmm3");
        __asm__ volatile("vmovupd %0, %%ymm2" ::"m"(in[0]) : "xmm2");
    } else {
        __asm__ volatile("movupd %0, %%xmm3" ::"m"(in[2]) : "xmm3");
        __asm__ volatile("movupd %0, %%xmm2" ::"m"(in[0]) : "xmm2");
    }
    while (!atomic_load(&spin_stop)) {
        __asm__ volatile("pause");
    }
    if (avx) {
        __asm__ volatile("vmovupd %%ymm2, %0" : "=m"(out[0]));
        for (int i = 0; i < 4; i++) bad |= out[i] != in[i];
        __asm__ volatile("vmovupd %%ymm3, %0" : "=m"(out[0]));
        for (int i = 0; i < 4; i++) bad |= out[i] != in[3];
    } else {
        __asm__ volatile("movupd %%xmm2, %0" : "=m"(out[0]));
        bad |= out[0] != in[0] || out[1] != in[1];
        __asm__ volatile("movupd %%xmm3, %0" : "=m"(out[0]));
        bad |= out[0] != in[2] || out[1] != in[3];
    }
    int ok = !bad && tls == 7 && gettid() == tids[2] && rseq_registered();
    printf("spinner tid=%d %s\n", gettid(), ok ? "ok" : "bad");
    fflush(stdout);
    return (void *)(long)ok;
}

int main(void) {
    close_inherited();
    tls = 1;
    pthread_t t[3];
    pthread_create(&t[0], NULL, waiter, (void *)0L);
    pthread_create(&t[1], NULL, waiter, (void *)1L);
    pthread_create(&t[2], NULL, spinner, NULL);
    while (atomic_load(&started) < 3) usleep(1000);
    char info[64];
    snprintf(info, sizeof info, "%d %d %d", tids[0], tids[1], tids[2]);
    ready(info);
    if (wait_go()) return 3;
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    atomic_store(&spin_stop, 1);
    long okall = 1;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        okall &= (long)r;
    }
    check("main-tls", tls == 1);
    check("main-rseq", rseq_registered());
    check("joined", okall);
    return 0;
}
