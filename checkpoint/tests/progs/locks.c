/* File locks: a POSIX write lock on bytes 10-29 and a POSIX read lock from byte 100 to the
 * end of one file, an OFD read lock on bytes 5-9 of another, a flock write lock on a third
 * held through an open file shared with a child. After restore a fresh process (not an owner
 * of any of them) finds each lock held by the right owner. argv[1]: scratch directory. */
#include "common.h"
#include <fcntl.h>
#include <errno.h>
#include <sys/file.h>
#include <sys/wait.h>

static char pa[512], pb[512], pc[512];

/* In a fresh child: is a lock of `type` on [start, start+len) of `path` refused, and by whom? */
static int conflict(const char *path, int ofd, short type, off_t start, off_t len, pid_t *by) {
    int fd = open(path, O_RDWR);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fd < 0 || fcntl(fd, ofd ? F_OFD_GETLK : F_GETLK, &fl)) return -1;
    close(fd);
    *by = fl.l_pid;
    return fl.l_type != F_UNLCK;
}

static int check_from_outside(pid_t root) {
    pid_t by = 0;
    int ok = conflict(pa, 0, F_RDLCK, 15, 1, &by) == 1 && by == root;
    check("posix-write", ok);
    ok = conflict(pa, 0, F_RDLCK, 30, 10, &by) == 0 && conflict(pa, 0, F_WRLCK, 5000, 1, &by) == 1 && by == root;
    check("posix-read-to-eof", ok);
    ok = conflict(pb, 1, F_WRLCK, 7, 1, &by) == 1 && by == -1 && conflict(pb, 1, F_WRLCK, 10, 1, &by) == 0;
    check("ofd-read", ok);
    int fd = open(pc, O_RDONLY);
    ok = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK;
    check("flock-write", ok);
    return 0;
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    snprintf(pa, sizeof pa, "%s/a", argv[1]);
    snprintf(pb, sizeof pb, "%s/b", argv[1]);
    snprintf(pc, sizeof pc, "%s/c", argv[1]);
    int a = open(pa, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int b = open(pb, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int c = open(pc, O_RDWR | O_CREAT | O_TRUNC, 0600);
    struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 20};
    struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0};
    struct flock o = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 5};
    if (fcntl(a, F_SETLK, &w) || fcntl(a, F_SETLK, &r) || fcntl(b, F_OFD_SETLK, &o) ||
        flock(c, LOCK_EX | LOCK_NB))
        return 2;
    int go[2];
    if (pipe(go)) return 2;
    pid_t child = fork(); /* shares the open file of c, and so its flock lock */
    if (child == 0) {
        char ch;
        _exit(read(go[0], &ch, 1) == 1 ? 0 : 1);
    }
    ready(NULL);
    if (wait_go()) return 3;
    pid_t checker = fork();
    if (checker == 0) _exit(check_from_outside(getppid()));
    int st;
    waitpid(checker, &st, 0);
    if (write(go[1], "g", 1) != 1) return 4;
    waitpid(child, &st, 0);
    return 0;
}
