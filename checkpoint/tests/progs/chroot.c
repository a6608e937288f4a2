/* Root directory: chroots into argv[1] (which holds a file named "marker"), keeps its cwd
 * outside the new root, and checks both after restore. */
#include "common.h"
#include <sys/stat.h>

int main(int argc, char **argv) {
    close_inherited();
    if (argc < 2 || chdir(argv[1]) || chroot(argv[1]) || chdir("/")) return 2;
    struct stat st;
    int before = stat("/marker", &st) == 0;
    ready(NULL);
    if (wait_go()) return 3;
    char cwd[256];
    check("root", before && stat("/marker", &st) == 0 && stat("/etc/passwd", &st) != 0);
    check("cwd", getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") == 0);
    return 0;
}
