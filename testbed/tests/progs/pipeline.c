/* A tree with a pipe inside: the parent writes "<i>" into a pipe every 20 ms, COUNT times;
 * the child reads each number and prints "<i> <child pid> <parent pid>". Exits 0 when done. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 100;
    int fds[2];
    if (pipe(fds) < 0) return 2;
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        close(fds[1]);
        FILE *in = fdopen(fds[0], "r");
        int i;
        while (fscanf(in, "%d", &i) == 1) {
            printf("%d %d %d\n", i, (int)getpid(), (int)getppid());
            fflush(stdout);
        }
        return 0;
    }
    close(fds[0]);
    struct timespec ts = {0, 20 * 1000000L};
    for (int i = 0; i < count; i++) {
        dprintf(fds[1], "%d\n", i);
        nanosleep(&ts, NULL);
    }
    close(fds[1]);
    int status;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}
