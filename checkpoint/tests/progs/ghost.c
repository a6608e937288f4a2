/* Files deleted while open, and pipes whose other end is closed everywhere (argv[1]: a
 * directory). A file with a hole, mode 0640, open twice (read-write at offset 3, write-only),
 * shared with a child, then unlinked; an O_TMPFILE file; a pipe whose write end is closed
 * (the reader must see its bytes, then end of file) and one whose read end is closed (a write
 * must fail with EPIPE); a memfd with seals, mode 0642, O_APPEND, at offset 2. */
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FAR (1 << 20)

static int deleted_name(int fd, const char *name) {
    char l[64], buf[512];
    snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(l, buf, sizeof buf - 1);
    if (n < 0) return 0;
    buf[n] = 0;
    return strstr(buf, name) && strstr(buf, " (deleted)");
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    signal(SIGPIPE, SIG_IGN);
    char path[512];
    snprintf(path, sizeof path, "%s/ghost-file", argv[1]);
    int rw = open(path, O_RDWR | O_CREAT | O_EXCL, 0640);
    int wo = open(path, O_WRONLY);
    if (rw < 0 || wo < 0) return 2;
    if (fchmod(rw, 0640) || pwrite(rw, "hello", 5, 0) != 5 || pwrite(rw, "far", 3, FAR) != 3)
        return 2;
    struct timespec times[2] = {{1000000000, 5}, {1100000000, 7}};
    if (futimens(rw, times) || lseek(rw, 3, SEEK_SET) != 3 || unlink(path)) return 2;
    /* a memfd run while open for writing (only memfd_create's own file allows that) */
    int xfd = memfd_create("ghost-script", 0);
    if (xfd < 0 || write(xfd, "#!/bin/true\n", 12) != 12) return 2;
    int tmp = open(argv[1], O_TMPFILE | O_RDWR, 0600);
    if (tmp < 0 || write(tmp, "tmpdata", 7) != 7) return 2;
    int mfd = memfd_create("ghost-memfd", MFD_ALLOW_SEALING);
    if (mfd < 0 || write(mfd, "memdata", 7) != 7 || fchmod(mfd, 0642) ||
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) || fcntl(mfd, F_SETFL, O_APPEND) ||
        lseek(mfd, 2, SEEK_SET) != 2)
        return 2;
    int hup[2], err[2];
    if (pipe(hup) || pipe(err) || write(hup[1], "left", 4) != 4) return 2;
    close(hup[1]);
    close(err[0]);
    int up[2], down[2];
    if (pipe(up) || pipe(down)) return 2;
    pid_t child = fork();
    if (child == 0) {
        /* the child checks that it still shares the deleted file with its parent */
        char c;
        if (read(down[0], &c, 1) != 1) _exit(1);
        char buf[8] = {0};
        c = pread(rw, buf, 5, 0) == 5 && !memcmp(buf, "HELLO", 5) ? 'y' : 'n';
        _exit(write(up[1], &c, 1) == 1 ? 0 : 1);
    }
    ready(NULL);
    if (wait_go()) return 4;
    struct stat st;
    char buf[16] = {0};
    check("ghost-stat", !fstat(rw, &st) && st.st_nlink == 0 && st.st_size == FAR + 3 &&
                            (st.st_mode & 07777) == 0640);
    check("ghost-name", deleted_name(rw, "ghost-file"));
    check("ghost-pos", lseek(rw, 0, SEEK_CUR) == 3);
    check("ghost-data", pread(rw, buf, 5, 0) == 5 && !memcmp(buf, "hello", 5) &&
                            pread(rw, buf, 3, FAR) == 3 && !memcmp(buf, "far", 3));
    check("ghost-hole", lseek(rw, 4096, SEEK_DATA) == FAR && lseek(rw, 0, SEEK_HOLE) == 4096);
    /* (reads, the dump's too, may move the access time: relatime) */
    check("ghost-times", !fstat(rw, &st) && st.st_mtim.tv_sec == 1100000000 &&
                             st.st_mtim.tv_nsec == 7);
    pid_t runner = fork();
    if (runner == 0) {
        char *const args[] = {"true", NULL}, *const env[] = {NULL};
        syscall(SYS_execveat, xfd, "", args, env, AT_EMPTY_PATH);
        _exit(errno);
    }
    int rst;
    check("memfd-exec", runner > 0 && waitpid(runner, &rst, 0) == runner && WIFEXITED(rst) &&
                            WEXITSTATUS(rst) == 0);
    check("ghost-same-inode", pwrite(wo, "HELLO", 5, 0) == 5 && pread(rw, buf, 5, 0) == 5 &&
                                  !memcmp(buf, "HELLO", 5));
    char c = 0;
    check("ghost-child", write(down[1], "x", 1) == 1 && read(up[0], &c, 1) == 1 && c == 'y');
    check("tmpfile", pread(tmp, buf, 7, 0) == 7 && !memcmp(buf, "tmpdata", 7) &&
                         !fstat(tmp, &st) && st.st_nlink == 0);
    check("pipe-no-writer", read(hup[0], buf, 16) == 4 && !memcmp(buf, "left", 4) &&
                                read(hup[0], buf, 16) == 0);
    check("pipe-no-reader", write(err[1], "x", 1) == -1 && errno == EPIPE);
    check("memfd", deleted_name(mfd, "/memfd:ghost-memfd") &&
                       fcntl(mfd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW) &&
                       (fcntl(mfd, F_GETFL) & O_APPEND) && lseek(mfd, 0, SEEK_CUR) == 2 &&
                       !fstat(mfd, &st) && (st.st_mode & 07777) == 0642 && st.st_size == 7 &&
                       pread(mfd, buf, 7, 0) == 7 && !memcmp(buf, "memdata", 7) &&
                       ftruncate(mfd, 1) == -1 && errno == EPERM);
    int wst;
    check("child", waitpid(child, &wst, 0) == child && WIFEXITED(wst) && !WEXITSTATUS(wst));
    return 0;
}
