/* Owners of open files: the read end of a pipe signals this process with SIGRTMIN+1 when
 * bytes arrive (F_SETOWN, F_SETSIG, O_ASYNC); one end of a socket pair signals a given thread
 * (F_SETOWN_EX F_OWNER_TID). After restore both owners and the signal are what they were, and
 * a write to the pipe brings the signal. */
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

static volatile sig_atomic_t got;
static pid_t waiter_tid;

static void on_io(int sig) { got = sig; }

static void *waiter(void *arg) {
    (void)arg;
    waiter_tid = gettid();
    for (;;) pause();
    return NULL;
}

int main(void) {
    close_inherited();
    int p[2], sv[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 2;
    signal(SIGRTMIN + 1, on_io);
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, NULL)) return 2;
    while (!waiter_tid) usleep(1000);
    struct f_owner_ex to_thread = {.type = F_OWNER_TID, .pid = waiter_tid};
    if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETSIG, SIGRTMIN + 1) ||
        fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) || fcntl(sv[0], F_SETOWN_EX, &to_thread))
        return 3;
    ready(NULL);
    if (wait_go()) return 4;
    struct f_owner_ex a, b;
    fcntl(p[0], F_GETOWN_EX, &a);
    fcntl(sv[0], F_GETOWN_EX, &b);
    check("pipe-owner", a.type == F_OWNER_PID && a.pid == getpid() && fcntl(p[0], F_GETSIG) == SIGRTMIN + 1);
    check("socket-owner", b.type == F_OWNER_TID && b.pid == waiter_tid);
    if (write(p[1], "x", 1) != 1) return 5;
    for (int i = 0; i < 2000 && !got; i++) usleep(1000);
    check("sigio", got == SIGRTMIN + 1);
    return 0;
}
