/* POSIX timers: a disarmed one with a period (SIGEV_NONE), a one-shot one an hour away
 * (SIGUSR1, a value), a periodic one that signals the main thread (SIGEV_THREAD_ID, SIGUSR2,
 * blocked and taken with sigtimedwait), made after another timer was deleted (ids with a
 * gap). After restore each keeps its id, settings and time left, and the periodic one fires. */
#include "common.h"
#include <signal.h>
#include <time.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static timer_t make(int notify, int sig, long value) {
    struct sigevent ev = {.sigev_notify = notify, .sigev_signo = sig};
    ev.sigev_value.sival_ptr = (void *)value;
    if (notify & SIGEV_THREAD_ID) ev.sigev_notify_thread_id = gettid();
    timer_t t;
    return timer_create(CLOCK_MONOTONIC, &ev, &t) ? (timer_t)-1 : t;
}

int main(void) {
    close_inherited();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGUSR1, SIG_IGN);
    timer_t none = make(SIGEV_NONE, 0, 0);
    timer_t gap = make(SIGEV_SIGNAL, SIGUSR1, 0);
    timer_t hour = make(SIGEV_SIGNAL, SIGUSR1, 0x1234);
    timer_t tick = make(SIGEV_THREAD_ID, SIGUSR2, 0x77);
    if (none == (timer_t)-1 || gap == (timer_t)-1 || hour == (timer_t)-1 ||
        tick == (timer_t)-1 || timer_delete(gap))
        return 2;
    struct itimerspec per = {.it_interval = {5, 0}}, h = {.it_value = {3600, 0}},
                      t = {.it_interval = {0, 10000000}, .it_value = {0, 10000000}};
    if (timer_settime(none, 0, &per, NULL) || timer_settime(hour, 0, &h, NULL) ||
        timer_settime(tick, 0, &t, NULL))
        return 2;
    ready(NULL);
    if (wait_go()) return 4;
    struct itimerspec now;
    check("disarmed", !timer_gettime(none, &now) && now.it_value.tv_sec == 0 &&
                          now.it_value.tv_nsec == 0);
    check("one-shot", !timer_gettime(hour, &now) && now.it_value.tv_sec > 3000 &&
                          now.it_value.tv_sec < 3600 && now.it_interval.tv_sec == 0);
    check("gap", timer_gettime(gap, &now) == -1);
    /* drain what fired before the dump, then a new expiry must come */
    siginfo_t si;
    struct timespec wait = {10, 0};
    int ok = 0;
    for (int i = 0; i < 3; i++)
        ok = sigtimedwait(&set, &si, &wait) == SIGUSR2 && si.si_code == SI_TIMER &&
             si.si_value.sival_ptr == (void *)0x77;
    check("periodic", ok && !timer_gettime(tick, &now) && now.it_interval.tv_nsec == 10000000);
    return 0;
}
