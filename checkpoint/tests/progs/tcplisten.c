/* TCP sockets holding no connection: an IPv4 listener with SO_REUSEADDR, TCP_NODELAY, a
 * receive buffer and a backlog of 3; an IPv6-only listener; a bound socket never connected;
 * a socket never bound; and a Unix socket pair end with SO_PASSCRED. After restore each must
 * have its address and options, and the listeners must take a new connection. */
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int opt(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    return getsockopt(fd, level, name, &v, &len) ? -1 : v;
}

static int port_of(int fd) {
    struct sockaddr_in6 a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len)) return -1;
    return ntohs(a.sin6_port); /* sin_port and sin6_port are at the same place */
}

/* Connects to the listener `l` (family `fam`, on loopback) and accepts: 1 on success. */
static int takes_connection(int l, int fam) {
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a6.sin6_port = a4.sin_port = htons(port_of(l));
    int c = socket(fam, SOCK_STREAM, 0);
    int ok = fam == AF_INET6 ? !connect(c, (struct sockaddr *)&a6, sizeof a6)
                             : !connect(c, (struct sockaddr *)&a4, sizeof a4);
    int s = ok ? accept(l, NULL, NULL) : -1;
    ok = s >= 0 && write(c, "hi", 2) == 2;
    char buf[2];
    ok = ok && read(s, buf, 2) == 2 && !memcmp(buf, "hi", 2);
    close(c);
    if (s >= 0) close(s);
    return ok;
}

int main(void) {
    close_inherited();
    int one = 1;
    int l4 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rcv = 65536;
    if (setsockopt(l4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(l4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
        setsockopt(l4, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) ||
        bind(l4, (struct sockaddr *)&a, sizeof a) || listen(l4, 3))
        return 2;
    int l6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) ||
        bind(l6, (struct sockaddr *)&a6, sizeof a6) || listen(l6, 5) ||
        fcntl(l6, F_SETFL, O_NONBLOCK))
        return 2;
    int b = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(b, (struct sockaddr *)&a, sizeof a)) return 2;
    int u = socket(AF_INET, SOCK_STREAM, 0);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) ||
        setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one))
        return 2;
    int p4 = port_of(l4), p6 = port_of(l6), pb = port_of(b), rbuf = opt(l4, SOL_SOCKET, SO_RCVBUF);
    ready(NULL);
    if (wait_go()) return 3;
    check("listen4-port", port_of(l4) == p4 && opt(l4, SOL_SOCKET, SO_ACCEPTCONN) == 1);
    check("listen4-options", opt(l4, SOL_SOCKET, SO_REUSEADDR) == 1 &&
                                 opt(l4, IPPROTO_TCP, TCP_NODELAY) == 1 &&
                                 opt(l4, SOL_SOCKET, SO_RCVBUF) == rbuf);
    check("listen4-accepts", takes_connection(l4, AF_INET));
    check("listen6", port_of(l6) == p6 && opt(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1 &&
                         (fcntl(l6, F_GETFL) & O_NONBLOCK) && accept(l6, NULL, NULL) == -1 &&
                         errno == EAGAIN && takes_connection(l6, AF_INET6));
    check("bound", port_of(b) == pb && opt(b, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    check("unbound", port_of(u) == 0 && opt(u, SOL_SOCKET, SO_REUSEADDR) == 0);
    check("unix-option", opt(sp[0], SOL_SOCKET, SO_PASSCRED) == 1 &&
                             opt(sp[1], SOL_SOCKET, SO_PASSCRED) == 0);
    return 0;
}
