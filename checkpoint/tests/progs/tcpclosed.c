/* An established TCP connection inside the process (to its own listener), restored with
 * tcp_close: both ends must come back closed (state CLOSE, reads end, writes fail with EPIPE)
 * while the listener keeps listening. */
#include "common.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

static int closed(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    char c;
    return !getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) && ti.tcpi_state == TCP_CLOSE &&
           recv(fd, &c, 1, MSG_DONTWAIT) == 0 && send(fd, "x", 1, MSG_DONTWAIT) == -1 &&
           errno == EPIPE;
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
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a)) return 2;
    int s = accept(l, NULL, NULL);
    if (s < 0 || write(c, "queued", 6) != 6) return 2;
    ready(NULL);
    if (wait_go()) return 3;
    check("client-closed", closed(c));
    check("server-closed", closed(s));
    int v = 0;
    len = sizeof v;
    check("listener", !getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) && v == 1);
    return 0;
}
