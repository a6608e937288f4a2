/* inotify: watches of a directory and of a file (argv[1]: a directory), with a gap in the
 * watch numbers (a watch removed). After restore the numbers and masks are the same (fdinfo)
 * and events of both watches arrive with their numbers. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>

static int masks(int fd, int wd, unsigned *mask) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        int w;
        unsigned m;
        if (sscanf(buf, "inotify wd:%d %*s %*s mask:%x", &w, &m) == 2 && w == wd) {
            *mask = m;
            found = 1;
        }
    }
    if (f) fclose(f);
    return found;
}

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2) return 2;
    char file[512], other[512];
    snprintf(file, sizeof file, "%s/watched", argv[1]);
    snprintf(other, sizeof other, "%s/new", argv[1]);
    close(open(file, O_CREAT | O_WRONLY, 0600));
    int fd = inotify_init1(IN_NONBLOCK);
    int gap = inotify_add_watch(fd, "/", IN_ATTRIB);
    int dir = inotify_add_watch(fd, argv[1], IN_CREATE | IN_ONLYDIR);
    int fw = inotify_add_watch(fd, file, IN_MODIFY);
    if (fd < 0 || gap < 0 || dir < 0 || fw < 0 || inotify_rm_watch(fd, gap)) return 2;
    /* the IN_IGNORED event of the removed watch */
    char ev[4096];
    if (read(fd, ev, sizeof ev) <= 0) return 2;
    unsigned dm = 0, fm = 0;
    if (!masks(fd, dir, &dm) || !masks(fd, fw, &fm)) return 2;
    ready(NULL);
    if (wait_go()) return 4;
    unsigned dm2 = 0, fm2 = 0;
    check("watches", masks(fd, dir, &dm2) && masks(fd, fw, &fm2) && dm2 == dm && fm2 == fm &&
                         !masks(fd, gap, &dm2));
    int w = open(file, O_WRONLY);
    close(open(other, O_CREAT | O_WRONLY, 0600));
    int got_dir = 0, got_file = 0;
    if (write(w, "x", 1) != 1) return 5;
    close(w);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 4 && !(got_dir && got_file) && poll(&p, 1, 10000) == 1; i++) {
        ssize_t n = read(fd, ev, sizeof ev);
        for (char *c = ev; n > 0 && c < ev + n;) {
            struct inotify_event *e = (struct inotify_event *)c;
            got_dir |= e->wd == dir && (e->mask & IN_CREATE) && !strcmp(e->name, "new");
            got_file |= e->wd == fw && (e->mask & IN_MODIFY);
            c += sizeof *e + e->len;
        }
    }
    check("events", got_dir && got_file);
    check("nonblock", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    return 0;
}
