/* sender: accepts N loopback TCP connections, then per round sends one SIZE-byte frame on each.
 * Variants (comma separated, each may combine tokens with '+') are interleaved round by round,
 * so every variant sees the same machine noise:
 *   method : send (default) | write (what libuv/uvloop does) | dontwait (send MSG_DONTWAIT|MSG_NOSIGNAL) | writev (1 iov)
 *            | writev2 (2 iovs: 4-byte ws header + payload) | uring (N SQEs, one io_uring_enter)
 *            | uringfix (same, registered files) | null (getppid() N times: bare syscall cost)
 *   nodelay       : TCP_NODELAY=1 on all sockets for that round (default: kernel default, off)
 *   sndbuf=BYTES  : SO_SNDBUFFORCE=BYTES (kernel doubles it) for that round (default: the autotuned value)
 *   busy | defer  : receiver mode (default block)
 *   rps           : RPS on lo -> cpu1 for that round (loopback receive half runs on the receiver's core);
 *                   only under netns.sh (private netns + sysfs, RPS_PATH set), never touches the host's lo
 * usage: sender PORT N CTLFILE VARIANTS [rounds_per_variant=20] [rate=5] [size=650] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <liburing.h>
#include "ctl.h"

enum { M_SEND, M_WRITE, M_DONTWAIT, M_WRITEV, M_WRITEV2, M_URING, M_URINGFIX, M_NULL };
struct variant {
    char name[64]; int method, nodelay, sndbuf, rxmode, rps;
    double *wall, *cpu; long utime, stime, nivcsw, steal, errs, overruns; int nr;
};

static void die(const char *m) { perror(m); exit(1); }
static double now_ns(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static long steal_cpu0(void) { /* jiffies (USER_HZ) */
    FILE *f = fopen("/proc/stat", "r"); char line[512]; long v[8] = {0};
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu0 ", 5)) { sscanf(line + 5, "%ld %ld %ld %ld %ld %ld %ld %ld", v, v+1, v+2, v+3, v+4, v+5, v+6, v+7); break; }
    if (f) fclose(f);
    return v[7];
}
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static double pct(double *v, int n, double p) { /* v sorted */
    if (p == 50) return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    int k = (int)(p / 100.0 * n + 0.999999) - 1; if (k < 0) k = 0; if (k >= n) k = n - 1; return v[k];
}

static void parse(struct variant *v, const char *spec, int rounds) {
    memset(v, 0, sizeof *v); snprintf(v->name, sizeof v->name, "%s", spec);
    char tmp[128]; snprintf(tmp, sizeof tmp, "%s", spec);
    for (char *s = strtok(tmp, "+"); s; s = strtok(0, "+")) {
        if (!strcmp(s, "send")) v->method = M_SEND;
        else if (!strcmp(s, "write")) v->method = M_WRITE;
        else if (!strcmp(s, "dontwait")) v->method = M_DONTWAIT;
        else if (!strcmp(s, "writev")) v->method = M_WRITEV;
        else if (!strcmp(s, "writev2")) v->method = M_WRITEV2;
        else if (!strcmp(s, "uring")) v->method = M_URING;
        else if (!strcmp(s, "uringfix")) v->method = M_URINGFIX;
        else if (!strcmp(s, "null")) v->method = M_NULL;
        else if (!strcmp(s, "nodelay")) v->nodelay = 1;
        else if (!strncmp(s, "sndbuf=", 7)) v->sndbuf = atoi(s + 7);
        else if (!strcmp(s, "busy")) v->rxmode = RX_BUSY;
        else if (!strcmp(s, "defer")) v->rxmode = RX_DEFER;
        else if (!strcmp(s, "block")) v->rxmode = RX_BLOCK;
        else if (!strcmp(s, "rps")) { v->rps = 1; if (!getenv("RPS_PATH")) { fprintf(stderr, "rps needs RPS_PATH (run under netns.sh)\n"); exit(2); } }
        else { fprintf(stderr, "bad token %s\n", s); exit(2); }
    }
    v->wall = calloc(rounds, sizeof(double)); v->cpu = calloc(rounds, sizeof(double));
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: sender PORT N CTLFILE VARIANTS [rounds=20] [rate=5] [size=650]\n"); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    int rounds = argc > 5 ? atoi(argv[5]) : 20; double rate = argc > 6 ? atof(argv[6]) : 5; int size = argc > 7 ? atoi(argv[7]) : 650;
    signal(SIGPIPE, SIG_IGN); alarm(120);
    struct variant vs[32]; int nv = 0;
    char spec[1024]; snprintf(spec, sizeof spec, "%s", argv[4]);
    char *save; for (char *s = strtok_r(spec, ",", &save); s && nv < 32; s = strtok_r(0, ",", &save)) parse(&vs[nv++], s, rounds);

    int cfd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600); if (cfd < 0) die("ctl");
    if (ftruncate(cfd, 4096)) die("ftruncate");
    struct ctl *c = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0); if (c == MAP_FAILED) die("mmap");

    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (void *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 65535) < 0) die("listen");
    int *fds = calloc(n, sizeof(int)); int ep = epoll_create1(0);
    struct linger lg = { 1, 0 };
    for (int i = 0; i < n; i++) {
        int fd = accept(ls, 0, 0); if (fd < 0) die("accept");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i }; /* like a server would */
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        fds[i] = fd; c->accepted = i + 1;
    }
    while (!c->ready) usleep(1000);
    int orig_sndbuf; socklen_t sl = sizeof orig_sndbuf; getsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &orig_sndbuf, &sl);

    fprintf(stderr, "sender: default SO_SNDBUF after accept = %d\n", orig_sndbuf);
    int need_uring = 0; for (int i = 0; i < nv; i++) need_uring |= vs[i].method >= M_URING && vs[i].method <= M_URINGFIX;
    struct io_uring ring; unsigned entries = 1; while (entries < (unsigned)n && entries < 32768) entries <<= 1;
    if (need_uring) {
        struct io_uring_params p = { .flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER };
        int r = io_uring_queue_init_params(entries, &ring, &p);
        if (r < 0) { memset(&p, 0, sizeof p); r = io_uring_queue_init_params(entries, &ring, &p); }
        if (r < 0) { errno = -r; die("io_uring_queue_init"); }
        if ((r = io_uring_register_files(&ring, fds, n)) < 0) { errno = -r; die("io_uring_register_files"); }
    }

    char *frame = malloc(size); memset(frame, 'x', size);
    struct iovec iov1[1] = { { frame, size } }, iov2[2] = { { frame, 4 }, { frame + 4, size - 4 } };
    int cur_nodelay = 0, cur_sndbuf = 0, cur_rps = -1;
    const char *rps_path = getenv("RPS_PATH"); /* 0 = untouched/original */
    double period = 1e9 / rate;
    int total = rounds * nv, warm = 3;
    double t0 = now_ns(CLOCK_MONOTONIC) + 50e6;
    for (int r = -warm; r < total; r++) {
        struct variant *v = &vs[(r + nv * warm) % nv];
        /* untimed setup */
        if (v->nodelay != cur_nodelay) { for (int i = 0; i < n; i++) setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &v->nodelay, sizeof(int)); cur_nodelay = v->nodelay; }
        if (v->sndbuf != cur_sndbuf) {
            int b = v->sndbuf ? v->sndbuf : orig_sndbuf / 2;
            for (int i = 0; i < n; i++) setsockopt(fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &b, sizeof b);
            cur_sndbuf = v->sndbuf;
        }
        if (rps_path && v->rps != cur_rps) {
            FILE *f = fopen(rps_path, "w"); if (!f) die("rps_path");
            fputs(v->rps ? "2" : "0", f); if (fclose(f)) die("write rps_cpus"); cur_rps = v->rps;
        }
        c->mode = v->rxmode;
        double tick = t0 + (r + warm) * period, t = now_ns(CLOCK_MONOTONIC);
        if (tick < t + 15e6) { if (r >= 0 && tick < t) v->overruns++; tick = t + 15e6; t0 = tick - (r + warm) * period; }
        while ((t = now_ns(CLOCK_MONOTONIC)) < tick) { struct timespec s = { 0, (long)(tick - t) }; if (s.tv_nsec > 999999999) s.tv_nsec = 999999999; nanosleep(&s, 0); }
        long st0 = steal_cpu0(); struct rusage ru0, ru1; getrusage(RUSAGE_THREAD, &ru0);
        long errs = 0;
        c->in_round = 1;
        double c0 = now_ns(CLOCK_THREAD_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
        switch (v->method) {
        case M_SEND: for (int i = 0; i < n; i++) if (send(fds[i], frame, size, 0) != size) errs++; break;
        case M_WRITE: for (int i = 0; i < n; i++) if (write(fds[i], frame, size) != size) errs++; break;
        case M_DONTWAIT: for (int i = 0; i < n; i++) if (send(fds[i], frame, size, MSG_DONTWAIT | MSG_NOSIGNAL) != size) errs++; break;
        case M_WRITEV: for (int i = 0; i < n; i++) if (writev(fds[i], iov1, 1) != size) errs++; break;
        case M_WRITEV2: for (int i = 0; i < n; i++) if (writev(fds[i], iov2, 2) != size) errs++; break;
        case M_NULL: for (int i = 0; i < n; i++) syscall(SYS_getppid); break;
        case M_URING: case M_URINGFIX: {
            int done = 0; struct io_uring_cqe *cqes[1024];
            for (int i = 0; i < n; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                if (!sqe) { io_uring_submit(&ring); sqe = io_uring_get_sqe(&ring); }
                if (v->method == M_URINGFIX) { io_uring_prep_send(sqe, i, frame, size, MSG_NOSIGNAL); sqe->flags |= IOSQE_FIXED_FILE; }
                else io_uring_prep_send(sqe, fds[i], frame, size, MSG_NOSIGNAL);
                sqe->user_data = i;
            }
            io_uring_submit(&ring); /* one io_uring_enter for all N when N <= ring size */
            while (done < n) {
                unsigned k = io_uring_peek_batch_cqe(&ring, cqes, 1024);
                if (!k) { struct io_uring_cqe *cq; io_uring_wait_cqe(&ring, &cq); continue; }
                for (unsigned j = 0; j < k; j++) if (cqes[j]->res != size) errs++;
                io_uring_cq_advance(&ring, k); done += k;
            }
        } break;
        }
        double w1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        c->in_round = 0;
        getrusage(RUSAGE_THREAD, &ru1); long st1 = steal_cpu0();
        if (r < 0) continue;
        v->wall[v->nr] = w1 - w0; v->cpu[v->nr] = c1 - c0; v->nr++;
        v->utime += (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1000000L + ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec;
        v->stime += (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000L + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec;
        v->nivcsw += ru1.ru_nivcsw - ru0.ru_nivcsw; v->steal += st1 - st0; v->errs += errs;
    }
    c->stop = 1;
    printf("%-28s %6s %9s %9s %9s %9s %9s %7s %6s %7s %8s %5s %4s\n", "variant", "conns", "us/send", "round_ms", "p90_ms",
           "min_ms", "cpu_ms", "cpu/wall", "sys%", "nivcsw", "steal_ms", "errs", "ovr");
    for (int i = 0; i < nv; i++) {
        struct variant *v = &vs[i]; if (!v->nr) continue;
        double w[v->nr], cp[v->nr], ratio_sum = 0, ws = 0;
        memcpy(w, v->wall, sizeof w); memcpy(cp, v->cpu, sizeof cp);
        for (int k = 0; k < v->nr; k++) { ratio_sum += v->cpu[k]; ws += v->wall[k]; }
        qsort(w, v->nr, sizeof(double), cmpd); qsort(cp, v->nr, sizeof(double), cmpd);
        printf("%-28s %6d %9.2f %9.2f %9.2f %9.2f %9.2f %6.0f%% %5.0f%% %7ld %8ld %5ld %4ld\n", v->name, n,
               pct(w, v->nr, 50) / 1e3 / n, pct(w, v->nr, 50) / 1e6, pct(w, v->nr, 90) / 1e6, w[0] / 1e6, pct(cp, v->nr, 50) / 1e6,
               100 * ratio_sum / ws, 100.0 * v->stime / (v->utime + v->stime + 1e-9), v->nivcsw, v->steal * (1000 / sysconf(_SC_CLK_TCK)), v->errs, v->overruns);
    }
    fflush(stdout);
    usleep(100000);
    for (int i = 0; i < n; i++) close(fds[i]);
    close(ls); unlink(argv[3]);
    return 0;
}
