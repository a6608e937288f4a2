/* Event fds: an epoll instance watching a pipe (edge-triggered, with user data) and a timerfd,
 * a periodic timerfd, a signalfd for a blocked signal with one pending; a second epoll watching
 * an eventfd under a number since closed (the eventfd lives on as a dup), now taken by
 * /dev/null. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <signal.h>

int main(void) {
    close_inherited();
    int p[2];
    if (pipe(p)) return 2;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x1234};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {.it_interval = {0, 20 * 1000 * 1000}, .it_value = {0, 300 * 1000 * 1000}};
    timerfd_settime(t, 0, &its, NULL);
    struct epoll_event te = {.events = EPOLLIN, .data.u64 = 0x5678};
    epoll_ctl(ep, EPOLL_CTL_ADD, t, &te);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigprocmask(SIG_BLOCK, &m, NULL);
    int s = signalfd(-1, &m, SFD_NONBLOCK);
    raise(SIGUSR1);
    int ev = eventfd(0, EFD_NONBLOCK);
    int ep2 = epoll_create1(0);
    struct epoll_event ee = {.events = EPOLLIN, .data.u64 = 0x9abc};
    int evdup = dup(ev);
    if (ev < 0 || ep2 < 0 || evdup < 0 || epoll_ctl(ep2, EPOLL_CTL_ADD, ev, &ee) || close(ev))
        return 2;
    /* a second eventfd watched under the same number, closed the same way */
    struct epoll_event ee2 = {.events = EPOLLIN, .data.u64 = 0xdef0};
    int ev2 = eventfd(0, EFD_NONBLOCK), ev2dup = dup(ev2);
    if (ev2 != ev || ev2dup < 0 || epoll_ctl(ep2, EPOLL_CTL_ADD, ev2, &ee2) || close(ev2) ||
        open("/dev/null", O_RDONLY) != ev)
        return 2;
    ready(NULL);
    if (wait_go()) return 3;
    if (write(p[1], "x", 1) != 1) return 4;
    struct epoll_event out[4];
    int got_pipe = 0, got_timer = 0;
    for (int round = 0; round < 20 && !(got_pipe && got_timer); round++) {
        int n = epoll_wait(ep, out, 4, 1000);
        for (int i = 0; i < n; i++) {
            got_pipe |= out[i].data.u64 == 0x1234;
            got_timer |= out[i].data.u64 == 0x5678;
        }
    }
    check("epoll-pipe", got_pipe);
    check("epoll-timerfd", got_timer);
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    check("timerfd-interval", cur.it_interval.tv_nsec == 20 * 1000 * 1000);
    struct signalfd_siginfo si;
    check("signalfd", read(s, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1);
    check("epoll-del", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0);
    uint64_t one = 1;
    char path[64], l[64] = {0};
    snprintf(path, sizeof path, "/proc/self/fd/%d", ev);
    check("epoll-closed-fd", write(evdup, &one, 8) == 8 && epoll_wait(ep2, out, 4, 5000) == 1 &&
                                 out[0].data.u64 == 0x9abc && readlink(path, l, sizeof l - 1) > 0 &&
                                 !strcmp(l, "/dev/null") && !(fcntl(ev, F_GETFD) & FD_CLOEXEC));
    int n2 = write(ev2dup, &one, 8) == 8 ? epoll_wait(ep2, out, 4, 5000) : -1;
    check("epoll-same-number", n2 == 2 && (out[0].data.u64 == 0xdef0 || out[1].data.u64 == 0xdef0));
    return 0;
}
