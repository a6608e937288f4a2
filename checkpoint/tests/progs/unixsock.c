/* Unix sockets connected to nothing, and a pair with one end closed (argv[1]: a directory,
 * made the working directory): a stream socket listening on relative name "listen.sock"
 * (mode 0640), a datagram socket bound to an abstract name, a stream socket never connected,
 * a seqpacket socket bound to a path then removed, a stream pair whose other end sent "bye"
 * and was closed. After restore: the same names, a connection to the listener is accepted,
 * a datagram reaches the abstract socket, the file removed stays removed, the survivor reads
 * "bye" then end of file; a datagram pair and a seqpacket pair with messages queued each way
 * get each message back whole, in order. */
#include "common.h"
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static socklen_t addr(struct sockaddr_un *a, const char *name, size_t len) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, name, len);
    return offsetof(struct sockaddr_un, sun_path) + len;
}

static int named(int fd, const char *name, size_t len) {
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    return !getsockname(fd, (struct sockaddr *)&a, &l) &&
           l >= offsetof(struct sockaddr_un, sun_path) + len && !memcmp(a.sun_path, name, len);
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2 || chdir(argv[1])) return 2;
    char abs_name[32], gone[512];
    int an = snprintf(abs_name, sizeof abs_name, "%css-test-%d", 0, getpid());
    snprintf(gone, sizeof gone, "%s/gone.sock", argv[1]);
    struct sockaddr_un a;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    int g = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    int pair[2];
    if (l < 0 || d < 0 || u < 0 || g < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) return 2;
    if (bind(l, (struct sockaddr *)&a, addr(&a, "listen.sock", 11)) || listen(l, 7) ||
        chmod("listen.sock", 0640) || bind(d, (struct sockaddr *)&a, addr(&a, abs_name, an)) ||
        bind(g, (struct sockaddr *)&a, addr(&a, gone, strlen(gone))) || unlink(gone) ||
        write(pair[1], "bye", 3) != 3 || close(pair[1]))
        return 3;
    int dp[2], sp[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) ||
        send(dp[1], "one", 3, 0) != 3 || send(dp[1], "two22", 5, 0) != 5 ||
        send(dp[1], "three333", 8, 0) != 8 || send(dp[0], "back", 4, 0) != 4 ||
        send(sp[0], "aa", 2, 0) != 2 || send(sp[0], "bbb", 3, 0) != 3)
        return 3;
    ready(NULL);
    if (wait_go()) return 4;
    struct stat st;
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    check("listening", named(l, "listen.sock", 11) && !stat("listen.sock", &st) &&
                           (st.st_mode & 0777) == 0640 &&
                           !connect(c, (struct sockaddr *)&a, addr(&a, "listen.sock", 11)) &&
                           accept(l, NULL, NULL) >= 0);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    char buf[8] = {0};
    check("abstract", named(d, abs_name, an) &&
                          sendto(s, "dg", 2, 0, (struct sockaddr *)&a, addr(&a, abs_name, an)) == 2 &&
                          recv(d, buf, sizeof buf, 0) == 2 && !memcmp(buf, "dg", 2));
    socklen_t sl = sizeof a;
    check("unconnected", getpeername(u, (struct sockaddr *)&a, &sl) == -1 && errno == ENOTCONN);
    check("removed", named(g, gone, strlen(gone)) && stat(gone, &st) == -1 && errno == ENOENT);
    check("closed-peer", read(pair[0], buf, sizeof buf) == 3 && !memcmp(buf, "bye", 3) &&
                             read(pair[0], buf, sizeof buf) == 0);
    char m[16];
    int ok = recv(dp[0], m, sizeof m, MSG_DONTWAIT) == 3 && !memcmp(m, "one", 3) &&
             recv(dp[0], m, sizeof m, MSG_DONTWAIT) == 5 && !memcmp(m, "two22", 5) &&
             recv(dp[0], m, sizeof m, MSG_DONTWAIT) == 8 && !memcmp(m, "three333", 8) &&
             recv(dp[0], m, sizeof m, MSG_DONTWAIT) == -1 &&
             recv(dp[1], m, sizeof m, MSG_DONTWAIT) == 4 && !memcmp(m, "back", 4);
    check("datagrams", ok);
    check("seqpacket", recv(sp[1], m, sizeof m, MSG_DONTWAIT) == 2 &&
                           recv(sp[1], m, sizeof m, MSG_DONTWAIT) == 3 && !memcmp(m, "bbb", 3));
    return 0;
}
