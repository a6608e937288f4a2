/* An established TCP connection between a parent and its child (IPv4 loopback), with bytes
 * queued both ways: the parent sent 300 KiB the child has not read (part in the child's
 * receive queue, part still in the parent's send queue), the child sent "ping" the parent
 * has not read. After restore both read what was queued, in order, then talk on. */
#include "common.h"
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define BIG (300 * 1024)

static unsigned char pattern(size_t i) { return (unsigned char)(i * 31 + (i >> 10)); }

static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return -1;
        got += r;
    }
    return 0;
}

int main(void) {
    close_inherited();
    signal(SIGPIPE, SIG_IGN);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        return 2;
    int sync[2];
    if (pipe(sync)) return 2;
    pid_t child = fork();
    if (child == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) || write(c, "ping", 4) != 4) _exit(2);
        char go;
        /* told by the parent (after restore) to read */
        if (read(sync[0], &go, 1) != 1) _exit(3);
        static unsigned char buf[BIG];
        if (read_full(c, buf, BIG)) _exit(4);
        for (size_t i = 0; i < BIG; i++)
            if (buf[i] != pattern(i)) _exit(5);
        if (write(c, "pong", 4) != 4) _exit(6);
        char end[4];
        _exit(read_full(c, end, 4) || memcmp(end, "done", 4) ? 7 : 0);
    }
    int s = accept(l, NULL, NULL);
    if (s < 0) return 2;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static unsigned char big[BIG];
    for (size_t i = 0; i < BIG; i++) big[i] = pattern(i);
    /* non-blocking: queue what fits, the rest is written after restore */
    fcntl(s, F_SETFL, O_NONBLOCK);
    ssize_t sent = write(s, big, BIG);
    if (sent <= 0) return 2;
    fcntl(s, F_SETFL, 0);
    ready(NULL);
    if (wait_go()) return 3;
    char buf[4];
    check("queued-to-parent", !read_full(s, buf, 4) && !memcmp(buf, "ping", 4));
    check("rest-sent", write(s, big + sent, BIG - sent) == BIG - sent);
    check("go", write(sync[1], "g", 1) == 1);
    check("talk-on", !read_full(s, buf, 4) && !memcmp(buf, "pong", 4) && write(s, "done", 4) == 4);
    int st;
    check("child", waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("child-status %d\n", st);
    return 0;
}
