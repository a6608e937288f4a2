/* An MPI program for `ssi mpirun`: point-to-point messages around a ring (a token that every
 * rank adds its rank to, and a 1 MiB buffer that every rank checks and changes) and an
 * allreduce. Each rank prints one line:
 *
 *   rank R of N host H pid P left L token T buffer ok|BAD allreduce S max M
 *
 * Rank 0 checks the token and the allreduce against their closed forms and exits with 3 (via
 * MPI_Abort) when either is wrong; any rank with a corrupt buffer does the same.
 *
 * With an argument FILE, every rank then waits (at most 60 s) until FILE exists before it
 * finishes, so that a test can look at the running ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BUF_INTS (256 * 1024)

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    int right = (rank + 1) % size, left = (rank + size - 1) % size;

    /* Neighbours exchange ranks both ways at once. */
    int got_left = -1;
    MPI_Sendrecv(&rank, 1, MPI_INT, right, 1, &got_left, 1, MPI_INT, left, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);

    /* A token goes once around the ring, each rank adding its rank. */
    long token = 0;
    if (rank == 0) {
        MPI_Send(&token, 1, MPI_LONG, right, 2, MPI_COMM_WORLD);
        MPI_Recv(&token, 1, MPI_LONG, left, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(&token, 1, MPI_LONG, left, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        token += rank;
        MPI_Send(&token, 1, MPI_LONG, right, 2, MPI_COMM_WORLD);
    }

    /* 1 MiB around the ring (large enough for the rendezvous protocols): element i holds
     * i + the number of ranks it went through. */
    int *buf = malloc(BUF_INTS * sizeof *buf);
    if (!buf) MPI_Abort(MPI_COMM_WORLD, 4);
    int ok = 1;
    if (rank == 0) {
        for (int i = 0; i < BUF_INTS; i++) buf[i] = i;
        MPI_Send(buf, BUF_INTS, MPI_INT, right, 3, MPI_COMM_WORLD);
        MPI_Recv(buf, BUF_INTS, MPI_INT, left, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (int i = 0; i < BUF_INTS; i++) ok &= buf[i] == i + size - 1;
    } else {
        MPI_Recv(buf, BUF_INTS, MPI_INT, left, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (int i = 0; i < BUF_INTS; i++) {
            ok &= buf[i] == i + rank - 1;
            buf[i] += 1;
        }
        MPI_Send(buf, BUF_INTS, MPI_INT, right, 3, MPI_COMM_WORLD);
    }
    free(buf);

    /* Sum of (rank + 1)^2 and the largest rank, over every rank. */
    long mine[2] = {(long)(rank + 1) * (rank + 1), rank}, sum = 0, max = 0;
    MPI_Allreduce(&mine[0], &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&mine[1], &max, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);

    printf("rank %d of %d host %s pid %d left %d token %ld buffer %s allreduce %ld max %ld\n",
           rank, size, host, (int)getpid(), got_left, token, ok ? "ok" : "BAD", sum, max);
    fflush(stdout);

    long n = size;
    if (rank == 0) {
        long want_token = n * (n - 1) / 2, want_sum = n * (n + 1) * (2 * n + 1) / 6;
        if (token != want_token || sum != want_sum || max != n - 1) {
            fprintf(stderr, "rank 0: wrong results: token %ld (want %ld) sum %ld (want %ld)\n",
                    token, want_token, sum, want_sum);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
    }
    if (!ok || got_left != left) MPI_Abort(MPI_COMM_WORLD, 3);

    if (argc > 1) {
        int waited_ms = 0;
        while (access(argv[1], F_OK) != 0) {
            if (waited_ms >= 60000) MPI_Abort(MPI_COMM_WORLD, 5);
            usleep(20000);
            waited_ms += 20;
        }
    }

    /* Rank 0 reports once everyone is through. */
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        printf("all %d ranks agree\n", size);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}
