/* Files: a regular file with an offset, an O_APPEND file, a directory fd, /dev/null,
 * /dev/zero, /dev/urandom, a pipe and a FIFO with bytes in flight between parent and child,
 * a socket pair with queued bytes both ways, an eventfd with a count, a dup'ed fd sharing
 * its offset, cwd, umask, rlimits. argv[1]: scratch directory. */
#include "common.h"
#include <fcntl.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    char path[512], fifo[512];
    if (chdir(argv[1])) return 2;
    umask(027);
    struct rlimit rl = {.rlim_cur = 777, .rlim_max = 1000};
    setrlimit(RLIMIT_NOFILE, &rl);
    struct rlimit core = {.rlim_cur = 12345, .rlim_max = RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &core);
    snprintf(path, sizeof path, "%s/data.txt", argv[1]);
    int reg = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (write(reg, "0123456789", 10) != 10) return 2;
    lseek(reg, 4, SEEK_SET);
    int dupd = dup(reg);
    int app = open("log.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (write(app, "one\n", 4) != 4) return 2;
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int null = open("/dev/null", O_WRONLY);
    int zero = open("/dev/zero", O_RDONLY);
    int urnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    int p[2];
    if (pipe(p)) return 2;
    if (write(p[1], "in-flight", 9) != 9) return 2;
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    snprintf(fifo, sizeof fifo, "%s/fifo", argv[1]);
    mkfifo(fifo, 0600);
    int fr = open(fifo, O_RDONLY | O_NONBLOCK);
    int fw = open(fifo, O_WRONLY);
    if (write(fw, "fifo-bytes", 10) != 10) return 2;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 2;
    if (write(sv[0], "to-1", 4) != 4 || write(sv[1], "to-0!", 5) != 5) return 2;
    int efd = eventfd(7, EFD_NONBLOCK);
    int gp[2];
    if (pipe(gp)) return 2;
    /* a child holding the other pipe and socket ends */
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        close(sv[0]);
        char c;
        if (read(sv[1], &c, 1) != 1) _exit(3); /* first byte "t" of "to-1" */
        if (read(gp[0], &c, 1) != 1) _exit(3); /* blocks until after restore */
        char buf[16] = {0};
        int n = read(sv[1], buf, sizeof buf);
        if (write(p[1], "+child", 6) != 6) _exit(4);
        _exit(n == 3 && memcmp(buf, "o-1", 3) == 0 ? 0 : 1);
    }
    close(sv[1]);
    usleep(50000); /* let the child take its first byte */
    ready(NULL);
    if (wait_go()) return 3;
    if (write(gp[1], "g", 1) != 1) return 4;
    char buf[64] = {0};
    check("reg-offset", lseek(reg, 0, SEEK_CUR) == 4 && read(reg, buf, 3) == 3 && memcmp(buf, "456", 3) == 0);
    check("dup-shares-offset", lseek(dupd, 0, SEEK_CUR) == 7);
    check("append", write(app, "two\n", 4) == 4 && (fcntl(app, F_GETFL) & O_APPEND));
    struct stat a, b;
    fstat(dir, &a);
    stat(argv[1], &b);
    check("dir", a.st_ino == b.st_ino);
    check("devnull", write(null, "x", 1) == 1);
    check("devzero", read(zero, buf, 4) == 4 && buf[0] == 0 && buf[3] == 0);
    check("urandom", read(urnd, buf, 8) == 8 && (fcntl(urnd, F_GETFD) & FD_CLOEXEC));
    check("cloexec-clear", !(fcntl(reg, F_GETFD) & FD_CLOEXEC));
    int st;
    waitpid(child, &st, 0);
    check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    memset(buf, 0, sizeof buf);
    int n = read(p[0], buf, sizeof buf);
    check("pipe-bytes", n == 15 && memcmp(buf, "in-flight+child", 15) == 0);
    check("pipe-nonblock", (fcntl(p[0], F_GETFL) & O_NONBLOCK) && read(p[0], buf, 1) == -1 && errno == EAGAIN);
    memset(buf, 0, sizeof buf);
    check("fifo-bytes", read(fr, buf, sizeof buf) == 10 && memcmp(buf, "fifo-bytes", 10) == 0);
    memset(buf, 0, sizeof buf);
    check("socketpair-bytes", read(sv[0], buf, sizeof buf) == 5 && memcmp(buf, "to-0!", 5) == 0);
    uint64_t cnt = 0;
    check("eventfd", read(efd, &cnt, 8) == 8 && cnt == 7);
    char cwd[512];
    check("cwd", getcwd(cwd, sizeof cwd) && strcmp(cwd, argv[1]) == 0);
    mode_t old = umask(0);
    check("umask", old == 027);
    getrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_CORE, &core);
    check("rlimits", rl.rlim_cur == 777 && rl.rlim_max == 1000 && core.rlim_cur == 12345 && core.rlim_max == RLIM_INFINITY);
    return 0;
}
