/* Signal state: a handler with SA_SIGINFO|SA_RESTART, an ignored signal, a blocked signal
 * queued with a value (pending across the dump), a sigaltstack used by the handler, and
 * interval timers (ITIMER_REAL long, ITIMER_VIRTUAL). */
#include "common.h"
#include <signal.h>
#include <sys/time.h>

static volatile int got_usr1, got_usr2_value = -1, on_alt;
static char altstack[64 * 1024];

static void h_usr1(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si; (void)uc;
    int x;
    on_alt = (char *)&x >= altstack && (char *)&x < altstack + sizeof altstack;
    got_usr1++;
}

static void h_usr2(int s, siginfo_t *si, void *uc) {
    (void)s; (void)uc;
    got_usr2_value = si->si_value.sival_int;
}

int main(void) {
    close_inherited();
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_sigaction = h_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_sigaction = h_usr2;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGTERM, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, NULL);
    union sigval v = {.sival_int = 4242};
    sigqueue(getpid(), SIGUSR2, v);
    struct itimerval it = {.it_interval = {100, 0}, .it_value = {50, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct itimerval iv = {.it_interval = {0, 0}, .it_value = {30, 0}};
    setitimer(ITIMER_VIRTUAL, &iv, NULL);
    ready(NULL);
    if (wait_go()) return 3;
    struct sigaction cur;
    sigaction(SIGUSR1, NULL, &cur);
    check("handler", cur.sa_sigaction == h_usr1 && (cur.sa_flags & SA_RESTART) && (cur.sa_flags & SA_ONSTACK) && sigismember(&cur.sa_mask, SIGHUP));
    sigaction(SIGTERM, NULL, &cur);
    check("ignored", cur.sa_handler == SIG_IGN);
    sigset_t pend, mask;
    sigpending(&pend);
    sigprocmask(SIG_BLOCK, NULL, &mask);
    check("blocked", sigismember(&mask, SIGUSR2) && !sigismember(&mask, SIGUSR1));
    check("pending", sigismember(&pend, SIGUSR2));
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    check("pending-value", got_usr2_value == 4242);
    stack_t now;
    sigaltstack(NULL, &now);
    check("altstack", now.ss_sp == altstack && now.ss_size == sizeof altstack);
    raise(SIGUSR1);
    check("handler-runs-on-altstack", got_usr1 == 1 && on_alt);
    struct itimerval r;
    getitimer(ITIMER_REAL, &r);
    check("itimer-real", r.it_interval.tv_sec == 100 && r.it_value.tv_sec <= 50 && r.it_value.tv_sec >= 40);
    getitimer(ITIMER_VIRTUAL, &r);
    check("itimer-virtual", r.it_value.tv_sec <= 30 && r.it_value.tv_sec >= 25);
    check("ignored-still", kill(getpid(), SIGTERM) == 0);
    return 0;
}
