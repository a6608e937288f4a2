/* Holds an fd that cannot be checkpointed (argv[1]: tcp PORT (connected outside), udp, inotify (an event queued), netlink, memfd (mapped),
 * or unix PATH: a socket connected outside the tree); after
 * the refused dump it must still be running normally. */
#include "common.h"
#include <fcntl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/un.h>

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    int fd = -1;
    if (!strcmp(argv[1], "tcp")) {
        /* a connection to a listener outside the tree (the test's, on port argv[2]) */
        if (argc < 3) return 2;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons(atoi(argv[2]))};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 2;
    } else if (!strcmp(argv[1], "udp")) {
        fd = socket(AF_INET, SOCK_DGRAM, 0);
    } else if (!strcmp(argv[1], "inotify")) {
        /* an event queued and not read */
        fd = inotify_init1(0);
        if (fd < 0 || inotify_add_watch(fd, "/dev/null", IN_OPEN) < 0) return 2;
        close(open("/dev/null", O_RDONLY));
    } else if (!strcmp(argv[1], "netlink")) {
        fd = socket(AF_NETLINK, SOCK_RAW, 0);
    } else if (!strcmp(argv[1], "memfd")) {
        /* a mapped memfd: its pages and the mapping would no longer be one */
        fd = memfd_create("x", 0);
        if (fd < 0 || ftruncate(fd, 4096) ||
            mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
            return 2;
    } else if (!strcmp(argv[1], "unix") && argc > 2) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 2;
    }
    char info[32];
    snprintf(info, sizeof info, "fd=%d", fd);
    ready(info);
    if (wait_go()) return 3;
    check("alive", 1);
    return 0;
}
