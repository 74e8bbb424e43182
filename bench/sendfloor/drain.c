/* drain: receiver. Connects N TCP sockets to 127.0.0.1:port and drains them with epoll.
 * Mode is read from the shared ctl file each loop:
 *   block : epoll_wait(timeout 10 ms)  -> sleeps, gets woken by the sender (cross-core wakeup/IPI)
 *   busy  : epoll_wait(timeout 0) spin -> never sleeps, never needs a wakeup
 *   defer : does not touch the sockets while the sender is in its timed loop; drains afterwards
 * usage: drain PORT N CTLFILE */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include "ctl.h"

static void die(const char *m) { perror(m); exit(1); }

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: drain PORT N CTLFILE\n"); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    alarm(120); /* safety: never outlive a run */
    int cfd = -1;
    struct stat st;
    for (int i = 0; i < 2000; i++) {
        if (cfd < 0) cfd = open(argv[3], O_RDWR);
        if (cfd >= 0 && fstat(cfd, &st) == 0 && st.st_size >= 4096) break;
        usleep(5000);
    }
    if (cfd < 0) die("open ctl");
    struct ctl *c = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    if (c == MAP_FAILED) die("mmap");
    int ep = epoll_create1(0);
    int *fds = calloc(n, sizeof(int));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct linger lg = { 1, 0 };
    for (int i = 0; i < n; i++) {
        /* flow control so the listen backlog (somaxconn) never overflows */
        while (i - c->accepted > 2000) usleep(200);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        int r; for (int t = 0; (r = connect(fd, (void *)&a, sizeof a)) < 0 && t < 500; t++) usleep(10000);
        if (r < 0) die("connect");
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* RST on close: no TIME_WAIT */
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        fds[i] = fd;
    }
    c->ready = 1;
    static char buf[65536];
    struct epoll_event evs[1024];
    long waits[3] = {0}, nonempty[3] = {0}, events[3] = {0}, bytes = 0;
    int open_ = n;
    struct timespec ms1 = { 0, 1000000 };
    while (!c->stop && open_ > 0) {
        int mode = c->mode;
        int to;
        if (mode == RX_DEFER) {
            if (c->in_round) { nanosleep(&ms1, 0); continue; }
            to = 0;
        } else to = (mode == RX_BUSY) ? 0 : 10;
        int k = epoll_wait(ep, evs, 1024, to);
        waits[mode]++;
        if (k <= 0) { if (mode == RX_DEFER) nanosleep(&ms1, 0); continue; }
        nonempty[mode]++; events[mode] += k;
        for (int j = 0; j < k; j++) {
            int fd = fds[evs[j].data.u32];
            ssize_t r = recv(fd, buf, sizeof buf, 0); /* level-triggered: one recv per event */
            if (r > 0) bytes += r;
            else if (r == 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0); open_--; }
        }
    }
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    const char *nm[3] = {"block", "busy", "defer"};
    fprintf(stderr, "drain: bytes=%ld cpu user=%.2fs sys=%.2fs", bytes,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    for (int m = 0; m < 3; m++) if (waits[m])
        fprintf(stderr, " | %s: epoll_waits=%ld nonempty=%ld events/nonempty=%.1f", nm[m], waits[m], nonempty[m],
                nonempty[m] ? (double)events[m] / nonempty[m] : 0);
    fprintf(stderr, "\n");
    for (int i = 0; i < n; i++) close(fds[i]);
    return 0;
}
