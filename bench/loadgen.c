/*
 * loadgen: the benchmarks' load generator in C (one thread, non-blocking sockets, epoll).
 *
 * A drop-in replacement for the Python generator processes of bench/compare.py and bench/fanout.py
 * (their ``--generator`` mode): same command line, same JSON lines on stdin (commands) and stdout
 * (results). bench/compare.py and bench/fanout.py compile it on demand into bench/.build/loadgen:
 *
 *     cc -O2 -Wall -Wextra -o bench/.build/loadgen bench/loadgen.c -lz -lm
 *
 *     loadgen --proto liveblog|peer --port P --readers N --blogs B --seen-size S   (compare.py)
 *     loadgen --port P --readers N --max-seq S                                       (fanout.py)
 *     both take --nap-us U (default 100; 0: always block in epoll_wait): see poll_once();
 *     and --deflate 1: offer permessage-deflate (RFC 7692) as browsers do, and inflate what
 *     comes compressed (RSV1); see inflated().
 *     compare.py's also --storm W (open every reader at once, at most W connecting at a time, and
 *     report the time-to-snapshot distribution) and --resume (a reader told 1012/1001, or cut
 *     off, comes back with its cursor after the close reason's retry_ms, else with the widget's
 *     backoff: see the storm protocol)
 *
 * Reader i opens a WebSocket to 127.0.0.1:P for blog i % B ("bench" if B == 1, else "bench-<i>"),
 * BATCH at a time, each batch retried up to ATTEMPTS times. liveblog: ready at the first text frame
 * starting {"type":"snapshot"; peer (Socket.IO 4): Engine.IO open "0{...}" -> send "40", ready at
 * "40...", ping "2" -> "3", "44..."/"41"/"1" -> failure. An entry is any text frame carrying
 * "headline":"seq=<n> t=<unix time>": latency = CLOCK_REALTIME now - t; seq n belongs to blog
 * n % B as local number n / B, which indexes the reader's seen-bitmap (lost, duplicated and
 * unexpected events, as in compare.py's Reader).
 *
 * compare.py protocol (one JSON object per line):
 *   out {"ready": n, "failures": {...}, "connect_s": s}
 *   in  {"step": k}                  -> reset the step's counters, out {"armed": true}
 *   in  {"posted": [seqs], "t0": t}  -> wait until every connected reader has its blog's count (or
 *                                       DRAIN_TIMEOUT), out deliveries, expected, window_s, missing,
 *                                       latency_ms [p50, p99, max], cpu_pct
 *   in  {"final": true}              -> out lost, duplicates, unexpected, disconnected; exit
 *   with --storm, the ready line also has "join_ms": [p50, p90, p99, max] (each reader, from its
 *   connect() to its snapshot) and "last_s" (from the first connect() to the last snapshot).
 *   with --resume: in {"storm": true} -> out {"told": readers closed with 1012/1001, "retry_ms":
 *   [min, max], "distinct_retry_ms", "resumed": readers back, "back_s": [p50, p90, p99, max] (from
 *   the first close to each reader's 101, then to its first frame after it), "failed_attempts" /
 *   "refused_attempts" (tries to come back that failed / that the port refused), "live_n",
 *   "live_latency_ms": [p50, p99, max]} where live means entries posted after the reader's
 *   current connection was upgraded (catch-up replays are not latency), counted since the last
 *   step was armed. Latencies of every step leave catch-up replays out in this mode too.
 * fanout.py protocol: out ready as above; in {"go": true}; in {"posted": [seqs]} -> drain, out
 * {"drained": true}, then the summary (fanout.py's summarize() plus cpu_s, cpu_pct, and the
 * bytes: entry_frames, entry_wire_bytes, entry_text_bytes, compressed_frames, inflations,
 * agreed); exit. compare.py's step results carry the same byte counts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BATCH 200
#define ATTEMPTS 3
#define BATCH_TIMEOUT 60.0
#define DRAIN_TIMEOUT 15.0
#define MAX_EVENTS 1024
#define READ_CHUNK (256 * 1024)
#define MAX_FRAME (64u * 1024 * 1024)
#define STDIN_ID UINT32_MAX
#define NAP_US 100       /* see poll_once() */
#define BUSY_WINDOW 0.05 /* seconds */

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };
enum { S_IDLE, S_CONNECTING, S_UPGRADING, S_OPEN, S_CLOSED };

static const char SNAPSHOT[] = "{\"type\":\"snapshot\"";
static const char SEQ_MARK[] = "\"headline\":\"seq=";
#define SEQ_MARK_LEN (sizeof SEQ_MARK - 1)

typedef struct {
    int fd;
    uint8_t state;
    uint8_t deflate;      /* the server agreed on permessage-deflate */
    uint8_t ready;        /* got its snapshot / namespace CONNECT */
    uint8_t member;       /* ready when its batch ended: one of the measured readers */
    uint8_t disconnected; /* closed or lost after it was ready */
    int close_code;       /* -1: none */
    uint32_t blog;
    uint32_t received; /* entries this step */
    uint32_t duplicates, unexpected;
    const char *reason; /* why it failed to join (strdup'd) */
    uint8_t *seen;      /* bitmap, seen_size bits */
    uint8_t *in;        /* bytes not yet parsed (an incomplete header or frame) */
    uint32_t in_len, in_cap;
    uint8_t *out; /* bytes not yet sent */
    uint32_t out_len, out_cap;
    double connect_at, ready_at; /* monotonic: its connect(), its snapshot (--storm) */
    /* --resume */
    char cursor[72];      /* the last cursor it received ("" none) */
    int retry_ms;         /* what its last 1012/1001 asked (-1: none) */
    uint8_t failures;     /* attempts in a row that did not get a 101 */
    int asked_ms;         /* the retry_ms of its latest 1012/1001, for the report (-1: none) */
    uint32_t told;        /* closes with 1012/1001 */
    double closed_at;     /* monotonic, the latest such close */
    double upgraded_at;   /* CLOCK_REALTIME of its current connection's 101 */
    double back_at, frame_at; /* monotonic: 101 and first frame after a resume (0: not yet) */
} Reader;

/* ------------------------------------------------------------------------- options and state */

static int peer_proto;  /* --proto peer: Engine.IO v4 / Socket.IO */
static int fanout_mode; /* --max-seq given: fanout.py's protocol */
static int port;
static uint32_t nreaders, nblogs = 1;
static uint32_t seen_size;

static Reader *readers;
static char **requests; /* upgrade request per blog */
static size_t *request_lens;
static int epfd;
static uint8_t *rbuf;
static size_t rbuf_cap;

static double *lat; /* this step's latencies, seconds */
static size_t lat_len, lat_cap;
static double last_receive; /* CLOCK_REALTIME of the latest entry, any reader */
static double *seq_min, *seq_max; /* fanout mode: per seq, the first and last reader's latency */

static int waiting;          /* draining: counting readers still short of their expected count */
static uint32_t *expected;   /* per blog, this step */
static uint32_t pending;     /* member readers, connected, received < expected[blog] */
static uint32_t storm_window; /* --storm: at most this many connecting at once (0: batches) */
static int resume_mode;       /* --resume */
static char **blog_names;
static double first_close;    /* monotonic, the first 1012/1001 of the storm (0: none yet) */
static uint32_t storm_failed;  /* --resume: attempts to come back that failed, since first_close */
static uint32_t storm_refused; /* ... of which the port refused (nobody listening) */
static double *live_lat;      /* --resume: latencies of live entries since the step was armed */
static size_t live_len, live_cap;

typedef struct {
    char *text;
    unsigned count;
} Reason;
static Reason *reasons;
static size_t nreasons;

/* --deflate: every compressed frame is inflated (and checked) once per distinct payload. */
static int offer_deflate;
static uint64_t entry_frames, entry_wire_bytes, entry_text_bytes; /* frames carrying an entry */
static uint64_t compressed_frames, inflations;
static uint32_t agreed; /* readers whose handshake agreed on permessage-deflate */
static size_t frame_wire; /* the frame being handled: its bytes on the wire */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static double realtime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void count_reason(const char *text) {
    for (size_t i = 0; i < nreasons; i++)
        if (!strcmp(reasons[i].text, text)) {
            reasons[i].count++;
            return;
        }
    reasons = xrealloc(reasons, (nreasons + 1) * sizeof *reasons);
    reasons[nreasons].text = strdup(text);
    reasons[nreasons++].count = 1;
}

/* ------------------------------------------------------------------------- output (JSON) */

static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c); /* bytes, not UTF-8: good enough for a reason string */
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void put_number(FILE *f, double x) {
    if (isnan(x))
        fputs("NaN", f); /* what Python's json writes and reads */
    else
        fprintf(f, "%.17g", x);
}

static void put_ms3(FILE *f, const char *key, double a, double b, double c) {
    fprintf(f, "\"%s\": [", key);
    put_number(f, 1000 * a);
    fputs(", ", f);
    put_number(f, 1000 * b);
    fputs(", ", f);
    put_number(f, 1000 * c);
    fputs("]", f);
}

static void put_ms4(FILE *f, const char *key, double a, double b, double c, double d) {
    fprintf(f, "\"%s\": [", key);
    double v[4] = {a, b, c, d};
    for (int k = 0; k < 4; k++) {
        if (k) fputs(", ", f);
        put_number(f, 1000 * v[k]);
    }
    fputs("]", f);
}

static void put_ms2(FILE *f, const char *key, double a, double b) {
    fprintf(f, "\"%s\": [", key);
    put_number(f, 1000 * a);
    fputs(", ", f);
    put_number(f, 1000 * b);
    fputs("]", f);
}

static void put_codes(FILE *f) {
    /* disconnected member readers by close code ("dropped" if none) */
    int *codes = NULL;
    unsigned *counts = NULL;
    size_t n = 0;
    for (uint32_t i = 0; i < nreaders; i++) {
        Reader *r = &readers[i];
        if (!r->member || !r->disconnected) continue;
        int code = r->close_code > 0 ? r->close_code : 0;
        size_t j = 0;
        while (j < n && codes[j] != code) j++;
        if (j == n) {
            codes = xrealloc(codes, (n + 1) * sizeof *codes);
            counts = xrealloc(counts, (n + 1) * sizeof *counts);
            codes[n] = code;
            counts[n++] = 0;
        }
        counts[j]++;
    }
    fputs("\"disconnected\": {", f);
    for (size_t j = 0; j < n; j++) {
        if (codes[j])
            fprintf(f, "%s\"%d\": %u", j ? ", " : "", codes[j], counts[j]);
        else
            fprintf(f, "%s\"dropped\": %u", j ? ", " : "", counts[j]);
    }
    fputs("}", f);
    free(codes);
    free(counts);
}

/* ------------------------------------------------------------------------- percentiles */

/* The k-th smallest of a[0..n) (a is reordered): Hoare's selection, median-of-three pivot. */
static double select_kth(double *a, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        double x = a[lo], y = a[mid], z = a[hi];
        double pivot = (x < y) ? ((y < z) ? y : (x < z ? z : x)) : ((x < z) ? x : (y < z ? z : y));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        /* a[lo..j] <= pivot, a[i..hi] >= pivot, and anything between equals the pivot */
        if (i > j + 1 && k > j && k < i) return a[k];
        if (k <= j)
            hi = j;
        else
            lo = i;
    }
    return a[k];
}

/* fanout.py's/compare.py's percentile(): ordered[round(fraction * (n - 1))], round half to even. */
static double percentile(double *a, size_t n, double fraction) {
    if (!n) return NAN;
    if (fraction >= 1.0) {
        double m = a[0];
        for (size_t i = 1; i < n; i++)
            if (a[i] > m) m = a[i];
        return m;
    }
    double x = fraction * (double)(n - 1); /* Python's round(): half to even */
    size_t k = (size_t)x;
    double rest = x - (double)k;
    if (rest > 0.5 || (rest == 0.5 && (k & 1))) k++;
    return select_kth(a, n, k);
}

/* ------------------------------------------------------------------------- sockets */

static void reader_close(Reader *r) {
    if (r->fd >= 0) close(r->fd); /* also removes it from the epoll set */
    r->fd = -1;
    r->state = S_CLOSED;
    r->in_len = r->out_len = 0;
    free(r->in);
    free(r->out);
    r->in = r->out = NULL;
    r->in_cap = r->out_cap = 0;
}

/* The reader is done for: before it was ready, a reason to report; after, it is disconnected. */
static void schedule(uint32_t i, double due);
static void reader_fail(Reader *r, const char *reason) {
    if (r->state == S_CLOSED) return;
    if (resume_mode && r->member) {
        /* told when to come back: after retry_ms; else (cut off, refused, no retry_ms) the
         * widget's backoff: min(30 s, 0.5 s * 2^failures) * (0.5 + random) */
        int told = r->close_code == 1012 || r->close_code == 1001;
        double delay;
        if (told && r->retry_ms >= 0) {
            delay = r->retry_ms / 1000.0;
        } else {
            double base = 0.5 * (double)(1u << (r->failures < 6 ? r->failures : 6));
            delay = (base < 30 ? base : 30) * (0.5 + rand() / (double)RAND_MAX);
            if (r->failures < 255) r->failures++;
            if (first_close && !told) {
                storm_failed++;
                storm_refused += strstr(reason, "refused") != NULL;
            }
        }
        r->retry_ms = -1; /* a suggestion is for the close that made it */
        reader_close(r);
        schedule((uint32_t)(r - readers), monotonic() + delay);
        return;
    }
    if (r->ready) {
        if (!r->disconnected) {
            r->disconnected = 1;
            if (waiting && r->member && r->received < expected[r->blog]) pending--;
        }
    } else if (!r->reason) {
        r->reason = strdup(reason);
    }
    reader_close(r);
}

static void flush_out(Reader *r) {
    while (r->out_len) {
        ssize_t n = send(r->fd, r->out, r->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            reader_fail(r, strerror(errno));
            return;
        }
        memmove(r->out, r->out + n, r->out_len - n);
        r->out_len -= n;
    }
}

/* Send now, or keep what the socket does not take until EPOLLOUT (edge-triggered: no epoll_ctl). */
static void queue(Reader *r, const void *data, size_t len) {
    if (r->out_len == 0) {
        ssize_t n = send(r->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len) return;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            reader_fail(r, strerror(errno));
            return;
        }
        if (n > 0) {
            data = (const uint8_t *)data + n;
            len -= n;
        }
    }
    if (r->out_len + len > r->out_cap) {
        r->out_cap = r->out_len + len + 64;
        r->out = xrealloc(r->out, r->out_cap);
    }
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
}

/* A masked client frame (all-zero key: the payload goes as is); payloads here are < 126 bytes. */
static void send_frame(Reader *r, int opcode, const uint8_t *payload, size_t len) {
    uint8_t frame[6 + 125];
    if (len > 125) len = 125;
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | (uint8_t)len;
    memset(frame + 2, 0, 4);
    if (len) memcpy(frame + 6, payload, len);
    queue(r, frame, 6 + len);
}

static void start_connect(uint32_t i) {
    Reader *r = &readers[i];
    r->state = S_CONNECTING;
    if (!r->member) r->ready = 0;
    r->disconnected = 0;
    r->close_code = -1;
    r->connect_at = monotonic();
    if (r->reason) free((void *)r->reason);
    r->reason = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r->state = S_CLOSED;
        r->reason = strdup(strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r->fd = fd;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        char reason[160];
        snprintf(reason, sizeof reason, "connect: %s", strerror(errno));
        reader_fail(r, reason);
        return;
    }
    /* Connected or in progress: the first EPOLLOUT says which. Edge-triggered, so that epoll_wait
     * does not poll every busy socket once more, and the mask never changes. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) reader_fail(r, strerror(errno));
}

static void connected(Reader *r) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) {
        char reason[160];
        snprintf(reason, sizeof reason, "connect: %s", strerror(err));
        reader_fail(r, reason);
        return;
    }
    r->state = S_UPGRADING;
    if (r->member && r->cursor[0]) { /* --resume: come back from the cursor */
        char request[512];
        int n = snprintf(request, sizeof request,
                         "GET /api/v1/blogs/%s/live?cursor=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: ZmFub3V0LWJlbmNobWFyaw==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         blog_names[r->blog], r->cursor, port);
        queue(r, request, (size_t)n);
        return;
    }
    queue(r, requests[r->blog], request_lens[r->blog]);
}

/* ------------------------------------------------------------------------- --resume: due reconnects */

typedef struct {
    double due;
    uint32_t i;
} Due;
static Due *heap;
static size_t heap_len, heap_cap;

static void schedule(uint32_t i, double due) {
    if (heap_len == heap_cap) heap = xrealloc(heap, (heap_cap = heap_cap ? 2 * heap_cap : 1024) * sizeof *heap);
    size_t k = heap_len++;
    while (k && heap[(k - 1) / 2].due > due) {
        heap[k] = heap[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    heap[k] = (Due){due, i};
}

/* Start every reconnect that is due. */
static void reconnect_due(void) {
    double now = monotonic();
    while (heap_len && heap[0].due <= now) {
        uint32_t i = heap[0].i;
        Due last = heap[--heap_len];
        size_t k = 0;
        for (;;) {
            size_t c = 2 * k + 1;
            if (c >= heap_len) break;
            if (c + 1 < heap_len && heap[c + 1].due < heap[c].due) c++;
            if (heap[c].due >= last.due) break;
            heap[k] = heap[c];
            k = c;
        }
        if (heap_len) heap[k] = last;
        start_connect(i);
    }
}

/* The cursor of a liveblog frame ({"type":...,"cursor":"<c>",...}), kept for coming back. */
static void keep_cursor(Reader *r, const uint8_t *p, const uint8_t *end) {
    static const char mark[] = "\"cursor\":\"";
    size_t scan = end - p < 96 ? (size_t)(end - p) : 96;
    const uint8_t *at = memmem(p, scan, mark, sizeof mark - 1);
    if (!at) return;
    at += sizeof mark - 1;
    const uint8_t *q = memchr(at, '"', end - at);
    if (!q || (size_t)(q - at) >= sizeof r->cursor) return;
    memcpy(r->cursor, at, q - at);
    r->cursor[q - at] = 0;
}

/* ------------------------------------------------------------------------- messages */

static void count_seen(Reader *r, uint64_t index) {
    if (index >= seen_size)
        r->unexpected++;
    else if (r->seen[index >> 3] & (1u << (index & 7)))
        r->duplicates++;
    else
        r->seen[index >> 3] |= (uint8_t)(1u << (index & 7));
}

static int is_seen(const Reader *r, uint64_t index) {
    return index < seen_size && (r->seen[index >> 3] >> (index & 7)) & 1;
}

/* "seq=<n> t=<float>" after the marker; returns 0 if it is not that shape. */
static int parse_entry(const uint8_t *p, const uint8_t *end, uint64_t *seq, double *t) {
    uint64_t n = 0;
    const uint8_t *start = p;
    while (p < end && *p >= '0' && *p <= '9') n = n * 10 + (*p++ - '0');
    if (p == start || end - p < 3 || p[0] != ' ' || p[1] != 't' || p[2] != '=') return 0;
    p += 3;
    double whole = 0, frac = 0, scale = 1;
    start = p;
    while (p < end && *p >= '0' && *p <= '9') whole = whole * 10 + (*p++ - '0');
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            frac = frac * 10 + (*p++ - '0');
            scale *= 10;
        }
    }
    if (p == start || p >= end || *p != '"') return 0;
    *seq = n;
    *t = whole + frac / scale;
    return 1;
}

static void entry(Reader *r, uint64_t seq, double t, double now) {
    double latency = now - t;
    if (!resume_mode || t >= r->upgraded_at) { /* a replay after a resume is not a latency */
        if (lat_len == lat_cap) {
            lat_cap = lat_cap ? 2 * lat_cap : 1 << 16;
            lat = xrealloc(lat, lat_cap * sizeof *lat);
        }
        lat[lat_len++] = latency;
        if (resume_mode) {
            if (live_len == live_cap) live_lat = xrealloc(live_lat, (live_cap = live_cap ? 2 * live_cap : 1 << 16) * sizeof *live_lat);
            live_lat[live_len++] = latency;
        }
    }
    if (now > last_receive) last_receive = now;
    r->received++;
    uint64_t local = seq / nblogs;
    count_seen(r, seq % nblogs == r->blog ? local : (uint64_t)seen_size);
    if (fanout_mode && seq < seen_size) {
        if (latency < seq_min[seq]) seq_min[seq] = latency;
        if (latency > seq_max[seq]) seq_max[seq] = latency;
    }
    if (waiting && r->member && !r->disconnected && r->received == expected[r->blog]) pending--;
}

static int starts(const uint8_t *p, const uint8_t *end, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(end - p) >= n && !memcmp(p, prefix, n);
}

static void text(Reader *r, const uint8_t *p, const uint8_t *end, double now) {
    if (!peer_proto) {
        if (resume_mode) {
            keep_cursor(r, p, end);
            if (r->told && !r->frame_at) r->frame_at = monotonic();
        }
        if (!r->ready && starts(p, end, SNAPSHOT)) {
            r->ready = 1;
            r->ready_at = monotonic();
            return;
        }
    } else if (!starts(p, end, "42")) { /* Engine.IO / Socket.IO control packets */
        size_t n = end - p;
        if (n == 1 && p[0] == '2') /* Engine.IO ping */
            send_frame(r, OP_TEXT, (const uint8_t *)"3", 1);
        else if (starts(p, end, "0{")) /* Engine.IO open: connect the main namespace */
            send_frame(r, OP_TEXT, (const uint8_t *)"40", 2);
        else if (starts(p, end, "40")) { /* Socket.IO CONNECT acknowledged */
            if (!r->ready) {
                r->ready = 1;
                r->ready_at = monotonic();
            }
        } else if (starts(p, end, "44") || starts(p, end, "41") || (n && p[0] == '1')) {
            char reason[200];
            snprintf(reason, sizeof reason, "%.*s", (int)(n < 150 ? n : 150), (const char *)p);
            reader_fail(r, reason);
        }
        return;
    }
    const uint8_t *mark = memmem(p, end - p, SEQ_MARK, SEQ_MARK_LEN);
    uint64_t seq;
    double t;
    if (mark && parse_entry(mark + SEQ_MARK_LEN, end, &seq, &t)) {
        entry(r, seq, t, now);
        if (r->member) {
            entry_frames++;
            entry_wire_bytes += frame_wire;
            entry_text_bytes += end - p;
        }
    }
}

/* A compressed text message's payload, inflated (RFC 7692 §7.2.2: append 00 00 ff ff, inflate
 * raw deflate). The server compresses each event once, with no context takeover, and sends the
 * same bytes to every reader: so does this generator inflate each distinct payload once, keeping
 * the last INFLATE_CACHE of them by their exact bytes (a reader sent other bytes misses the cache
 * and is inflated, and checked, on its own). Inflating 10k copies would cost this one thread
 * more than the server spends writing them, and measure the generator instead of the server.
 * Returns 0 (and fails the reader) on corrupt data. */
#define INFLATE_CACHE 64
typedef struct {
    uint8_t *in, *out;
    size_t in_len, out_len;
} Inflated;
static Inflated inflate_cache[INFLATE_CACHE];
static unsigned inflate_next;
static z_stream zs;
static int zs_ready;

static int inflated(Reader *r, const uint8_t *p, size_t n, const uint8_t **out, size_t *out_len) {
    compressed_frames++;
    for (unsigned k = 0; k < INFLATE_CACHE; k++) {
        Inflated *c = &inflate_cache[k];
        if (c->in && c->in_len == n && !memcmp(c->in, p, n)) {
            *out = c->out;
            *out_len = c->out_len;
            return 1;
        }
    }
    inflations++;
    if (!zs_ready) {
        if (inflateInit2(&zs, -15) != Z_OK) die("inflateInit2 failed");
        zs_ready = 1;
    } else {
        inflateReset(&zs);
    }
    uint8_t *in = xrealloc(NULL, n + 4);
    memcpy(in, p, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    size_t cap = 4 * n + 256, len = 0;
    uint8_t *text = xrealloc(NULL, cap);
    zs.next_in = in;
    zs.avail_in = (uInt)(n + 4);
    for (;;) {
        zs.next_out = text + len;
        zs.avail_out = (uInt)(cap - len);
        int rc = inflate(&zs, Z_SYNC_FLUSH);
        len = cap - zs.avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
            free(in);
            free(text);
            reader_fail(r, "bad compressed frame");
            return 0;
        }
        if (zs.avail_in == 0 && zs.avail_out > 0) break;
        if (cap > MAX_FRAME) {
            free(in);
            free(text);
            reader_fail(r, "compressed frame too large");
            return 0;
        }
        cap *= 2;
        text = xrealloc(text, cap);
    }
    Inflated *slot = &inflate_cache[inflate_next++ % INFLATE_CACHE];
    free(slot->in);
    free(slot->out);
    *slot = (Inflated){.in = in, .in_len = n, .out = text, .out_len = len};
    *out = text;
    *out_len = len;
    return 1;
}

/* Handle every complete frame in p[0..n); return how many bytes were used. */
static size_t frames(Reader *r, uint8_t *p, size_t n, double now) {
    size_t pos = 0;
    while (n - pos >= 2) {
        uint8_t b0 = p[pos], b1 = p[pos + 1];
        uint64_t length = b1 & 0x7F;
        size_t head = 2;
        if (length == 126) {
            if (n - pos < 4) break;
            length = (uint64_t)p[pos + 2] << 8 | p[pos + 3];
            head = 4;
        } else if (length == 127) {
            if (n - pos < 10) break;
            length = 0;
            for (int k = 0; k < 8; k++) length = length << 8 | p[pos + 2 + k];
            head = 10;
        }
        if (length > MAX_FRAME) {
            reader_fail(r, "frame too large");
            return n;
        }
        size_t mask_at = pos + head;
        if (b1 & 0x80) head += 4; /* servers do not mask, but be lenient */
        if (n - pos < head || n - pos - head < length) break;
        uint8_t *payload = p + pos + head;
        if (b1 & 0x80)
            for (uint64_t k = 0; k < length; k++) payload[k] ^= p[mask_at + (k & 3)];
        frame_wire = head + length;
        switch (b0 & 0x0F) {
        case OP_TEXT:
            if (b0 & 0x40) { /* RSV1: compressed */
                const uint8_t *message;
                size_t message_len;
                if (!r->deflate) {
                    reader_fail(r, "compressed frame without agreement");
                    return n;
                }
                if (!inflated(r, payload, length, &message, &message_len)) return n;
                text(r, message, message + message_len, now);
            } else {
                text(r, payload, payload + length, now);
            }
            break;
        case OP_PING:
            send_frame(r, OP_PONG, payload, length);
            break;
        case OP_CLOSE: {
            r->close_code = length >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
            if (resume_mode && (r->close_code == 1012 || r->close_code == 1001)) {
                const uint8_t *at = length > 2 ? memmem(payload + 2, length - 2, "\"retry_ms\":", 11) : NULL;
                r->retry_ms = r->asked_ms = at ? atoi((const char *)at + 11) : -1; /* the payload ends in '}' */
                r->told++;
                r->closed_at = monotonic();
                r->back_at = r->frame_at = 0;
                if (!first_close) first_close = r->closed_at;
            }
            send_frame(r, OP_CLOSE, payload, length >= 2 ? 2 : 0);
            if (r->state != S_CLOSED) flush_out(r);
            char reason[64];
            snprintf(reason, sizeof reason, "closed by server with %d", r->close_code);
            reader_fail(r, reason);
            return n;
        }
        default: /* pong, continuation, binary: not used by either server */
            break;
        }
        if (r->state == S_CLOSED) return n;
        pos += head + length;
    }
    return pos;
}

/* Read until the socket is drained (edge-triggered: a short read means it is; anything that
 * arrives later raises a new edge), handling the frames of each read as they come. */
static void readable(Reader *r) {
    for (;;) {
        size_t have = r->in_len;
        if (rbuf_cap < have + READ_CHUNK) {
            rbuf_cap = have + READ_CHUNK;
            rbuf = xrealloc(rbuf, rbuf_cap);
        }
        if (have) memcpy(rbuf, r->in, have);
        size_t space = rbuf_cap - have;
        ssize_t got = recv(r->fd, rbuf + have, space, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            char reason[160];
            snprintf(reason, sizeof reason, "connection lost: %s", strerror(errno));
            reader_fail(r, reason);
            return;
        }
        if (got == 0) {
            reader_fail(r, "connection lost: EOF");
            return;
        }
        double now = realtime();
        size_t n = have + got, used = 0;
        if (r->state == S_UPGRADING) {
            uint8_t *end = memmem(rbuf, n, "\r\n\r\n", 4);
            if (end && !starts(rbuf, rbuf + n, "HTTP/1.1 101")) {
                int len = (int)((uint8_t *)memmem(rbuf, n, "\r\n", 2) - rbuf);
                char reason[200];
                snprintf(reason, sizeof reason, "%.*s", len < 150 ? len : 150, (const char *)rbuf);
                reader_fail(r, reason);
                return;
            }
            if (end) {
                r->state = S_OPEN;
                used = end + 4 - rbuf;
                r->deflate = memmem(rbuf, used, "permessage-deflate", 18) != NULL;
                agreed += r->deflate;
                r->upgraded_at = now;
                r->failures = 0;
                if (r->told && !r->back_at) r->back_at = monotonic();
            }
        }
        if (r->state == S_OPEN) used += frames(r, rbuf + used, n - used, now);
        if (r->state == S_CLOSED) return;
        r->in_len = n - used;
        if (r->in_len) {
            if (r->in_len > r->in_cap) {
                r->in_cap = r->in_len + 1024;
                r->in = xrealloc(r->in, r->in_cap);
            }
            memmove(r->in, rbuf + used, r->in_len);
        } else if (r->in_cap > 16384) {
            free(r->in);
            r->in = NULL;
            r->in_cap = 0;
        }
        if ((size_t)got < space) return;
    }
}

/* ------------------------------------------------------------------------- event loop */

static char *line_buf;
static size_t line_len, line_cap;
static int stdin_eof;

static void read_stdin(void) {
    for (;;) {
        if (line_cap - line_len < 65536) {
            line_cap = line_cap ? 2 * line_cap : 1 << 20;
            line_buf = xrealloc(line_buf, line_cap);
        }
        ssize_t n = read(0, line_buf + line_len, line_cap - line_len - 1);
        if (n > 0) {
            line_len += n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) stdin_eof = 1;
        return;
    }
}

static long nap_us = NAP_US;
static double busy_until; /* monotonic: nap-poll rather than block in epoll_wait until then */

/* One round of events, waiting at most timeout_ms for them.
 *
 * While data keeps coming, it does not block in epoll_wait: it polls, and sleeps nap_us when
 * nothing is ready. On loopback, a process blocked in epoll_wait is woken from within the
 * *server's* send() (the socket's data-ready callback wakes the waiter: a cross-core wake-up, in a
 * VM an IPI), a cost a remote client would not put on the server, and this generator, idle most of
 * the time, would be asleep there for most deliveries (in bench runs at 10k readers, the server's
 * CPU was about half as much again). Only after BUSY_WINDOW without any event does it block again.
 * --nap-us 0: always block (as the Python generator does). */
static void poll_once(int timeout_ms) {
    static struct epoll_event events[MAX_EVENTS];
    int n;
    if (heap_len) {
        reconnect_due();
        if (timeout_ms > 10) timeout_ms = 10;
    }
    if (nap_us > 0 && timeout_ms > 0 && monotonic() < busy_until) {
        n = epoll_wait(epfd, events, MAX_EVENTS, 0);
        if (n == 0) {
            struct timespec nap = {.tv_sec = 0, .tv_nsec = nap_us * 1000};
            nanosleep(&nap, NULL);
            return;
        }
    } else {
        n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    }
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    if (n > 0 && nap_us > 0) busy_until = monotonic() + BUSY_WINDOW;
    for (int k = 0; k < n; k++) {
        uint32_t i = events[k].data.u32;
        uint32_t what = events[k].events;
        if (i == STDIN_ID) {
            read_stdin();
            continue;
        }
        Reader *r = &readers[i];
        if (r->state == S_CLOSED || r->state == S_IDLE) continue; /* closed earlier in this batch */
        if (r->state == S_CONNECTING) {
            if (!(what & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
            connected(r);
        }
        if (r->state != S_CLOSED && r->out_len) flush_out(r);
        if (r->state != S_CLOSED && (what & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) readable(r);
    }
}

static int timeout_ms(double deadline) {
    double left = deadline - monotonic();
    if (left <= 0) return 0;
    return left > 0.05 ? 50 : (int)(left * 1000) + 1;
}

/* Connect the readers wanted[0..count): until each is ready or failed, or BATCH_TIMEOUT. */
static uint32_t open_batch(const uint32_t *wanted, uint32_t count) {
    for (uint32_t k = 0; k < count; k++) start_connect(wanted[k]);
    double deadline = monotonic() + BATCH_TIMEOUT;
    for (;;) {
        uint32_t open = 0;
        for (uint32_t k = 0; k < count; k++) {
            Reader *r = &readers[wanted[k]];
            if (!r->ready && r->state != S_CLOSED) open++;
        }
        if (!open || monotonic() >= deadline) break;
        poll_once(timeout_ms(deadline));
    }
    uint32_t joined = 0;
    for (uint32_t k = 0; k < count; k++) {
        Reader *r = &readers[wanted[k]];
        if (r->ready) {
            r->member = 1;
            joined++;
        } else {
            count_reason(r->reason ? r->reason : "not ready in time");
            reader_close(r);
            r->state = S_IDLE;
        }
    }
    return joined;
}

static uint32_t open_readers(void) {
    uint32_t members = 0;
    uint32_t wanted[BATCH];
    for (uint32_t first = 0; first < nreaders; first += BATCH) {
        uint32_t size = nreaders - first < BATCH ? nreaders - first : BATCH, count = size;
        for (uint32_t k = 0; k < size; k++) wanted[k] = first + k;
        for (int attempt = 0; attempt < ATTEMPTS && count; attempt++) {
            members += open_batch(wanted, count);
            uint32_t again = 0;
            for (uint32_t k = 0; k < count; k++)
                if (!readers[wanted[k]].member) wanted[again++] = wanted[k];
            count = again;
        }
        if (count == size) break; /* a whole batch failed: give up */
    }
    return members;
}

/* --storm: every reader at once, at most storm_window connecting at a time (more would only
 * overflow the listen backlog and wait out SYN retransmits, for either server), a failed one
 * tried again at once, up to ATTEMPTS. Fills join[] with each member's time from its first
 * connect() to its snapshot; *last is from the first connect() to the last snapshot. */
static uint32_t open_storm(double *join, double *last) {
    uint32_t *inflight = xrealloc(NULL, (size_t)storm_window * sizeof *inflight);
    double *first_at = xrealloc(NULL, (size_t)nreaders * sizeof *first_at);
    uint8_t *tries = calloc(nreaders, 1);
    if (!tries) die("out of memory");
    uint32_t next = 0, flying = 0, members = 0;
    double started = monotonic(), deadline = started + BATCH_TIMEOUT * ATTEMPTS, latest = started;
    for (;;) {
        while (next < nreaders && flying < storm_window) {
            first_at[next] = monotonic();
            tries[next] = 1;
            start_connect(next);
            inflight[flying++] = next++;
        }
        if (!flying || monotonic() >= deadline) break;
        poll_once(timeout_ms(deadline));
        uint32_t kept = 0;
        for (uint32_t k = 0; k < flying; k++) {
            uint32_t i = inflight[k];
            Reader *r = &readers[i];
            if (r->ready) {
                r->member = 1;
                join[members++] = r->ready_at - first_at[i];
                if (r->ready_at > latest) latest = r->ready_at;
            } else if (r->state == S_CLOSED && tries[i] < ATTEMPTS) {
                tries[i]++;
                start_connect(i);
                inflight[kept++] = i;
            } else if (r->state == S_CLOSED) {
                count_reason(r->reason ? r->reason : "closed");
                r->state = S_IDLE;
            } else {
                inflight[kept++] = i;
            }
        }
        flying = kept;
    }
    for (uint32_t k = 0; k < flying; k++) { /* not ready in time */
        Reader *r = &readers[inflight[k]];
        count_reason("not ready in time");
        reader_close(r);
        r->state = S_IDLE;
    }
    *last = latest - started;
    free(inflight);
    free(first_at);
    free(tries);
    return members;
}

/* ------------------------------------------------------------------------- commands */

/* The next complete line from stdin (NUL-terminated, in place), reading the sockets meanwhile;
 * exits if the controller went away. */
static char *next_line(size_t *consumed) {
    for (;;) {
        char *nl = memchr(line_buf, '\n', line_len);
        if (nl) {
            *nl = 0;
            *consumed = nl + 1 - line_buf;
            return line_buf;
        }
        if (stdin_eof) {
            fprintf(stderr, "loadgen: the controller went away\n");
            exit(1);
        }
        poll_once(1000);
    }
}

static void drop_line(size_t consumed) {
    memmove(line_buf, line_buf + consumed, line_len - consumed);
    line_len -= consumed;
}

/* The ints of the JSON list after "key": [ ... ] */
static uint64_t *parse_list(const char *line, const char *key, size_t *count) {
    const char *p = strstr(line, key);
    if (!p || !(p = strchr(p, '['))) die("no %s in the command", key);
    p++;
    size_t n = 0, cap = 1024;
    uint64_t *out = xrealloc(NULL, cap * sizeof *out);
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ']' || !*p) break;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p) die("bad list in the command");
        if (n == cap) out = xrealloc(out, (cap *= 2) * sizeof *out);
        out[n++] = v;
        p = end;
    }
    *count = n;
    return out;
}

static double parse_number(const char *line, const char *key) {
    const char *p = strstr(line, key);
    if (!p || !(p = strchr(p + strlen(key), ':'))) die("no %s in the command", key);
    return strtod(p + 1, NULL);
}

static void drain(const uint64_t *posted, size_t nposted) {
    for (uint32_t b = 0; b < nblogs; b++) expected[b] = 0;
    for (size_t k = 0; k < nposted; k++) expected[posted[k] % nblogs]++;
    pending = 0;
    for (uint32_t i = 0; i < nreaders; i++) {
        Reader *r = &readers[i];
        if (r->member && !r->disconnected && r->received < expected[r->blog]) pending++;
    }
    waiting = 1;
    double deadline = monotonic() + DRAIN_TIMEOUT;
    while (pending && monotonic() < deadline) poll_once(timeout_ms(deadline));
    waiting = 0;
}

/* How many of the posted seqs of its blog each member reader has not seen, in all (and, if
 * per_reader_lost, by reader). */
static uint64_t count_missing(const uint64_t *posted, size_t nposted, uint64_t *per_reader_lost) {
    size_t *start = xrealloc(NULL, ((size_t)nblogs + 1) * sizeof *start); /* posted, by blog */
    uint64_t *locals = xrealloc(NULL, nposted * sizeof *locals);
    for (uint32_t b = 0; b <= nblogs; b++) start[b] = 0;
    for (size_t k = 0; k < nposted; k++) start[posted[k] % nblogs + 1]++;
    for (uint32_t b = 0; b < nblogs; b++) start[b + 1] += start[b];
    for (size_t k = 0; k < nposted; k++) locals[start[posted[k] % nblogs]++] = posted[k] / nblogs;
    for (uint32_t b = nblogs; b > 0; b--) start[b] = start[b - 1]; /* back to the starts */
    start[0] = 0;
    uint64_t missing = 0;
    for (uint32_t i = 0; i < nreaders; i++) {
        Reader *r = &readers[i];
        if (!r->member) continue;
        uint64_t lost = 0;
        for (size_t k = start[r->blog]; k < start[r->blog + 1]; k++) lost += !is_seen(r, locals[k]);
        missing += lost;
        if (per_reader_lost) per_reader_lost[i] = lost;
    }
    free(start);
    free(locals);
    return missing;
}

static void put_bytes(FILE *f) {
    fprintf(f,
            "\"entry_frames\": %llu, \"entry_wire_bytes\": %llu, \"entry_text_bytes\": %llu, "
            "\"compressed_frames\": %llu, \"inflations\": %llu, \"agreed\": %u",
            (unsigned long long)entry_frames, (unsigned long long)entry_wire_bytes,
            (unsigned long long)entry_text_bytes, (unsigned long long)compressed_frames,
            (unsigned long long)inflations, agreed);
}

static int compare_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* --resume: how the readers told to come back came back (see the header). */
static void storm_report(void) {
    double *back = xrealloc(NULL, (size_t)nreaders * sizeof *back);
    double *frame = xrealloc(NULL, (size_t)nreaders * sizeof *frame);
    int *asked = xrealloc(NULL, (size_t)nreaders * sizeof *asked);
    uint32_t told = 0, resumed = 0, framed = 0, nasked = 0;
    for (uint32_t i = 0; i < nreaders; i++) {
        Reader *r = &readers[i];
        if (!r->member || !r->told) continue;
        told++;
        if (r->asked_ms >= 0) asked[nasked++] = r->asked_ms;
        if (r->back_at) back[resumed++] = r->back_at - first_close;
        if (r->frame_at) frame[framed++] = r->frame_at - first_close;
    }
    qsort(asked, nasked, sizeof *asked, compare_int);
    uint32_t distinct = 0;
    for (uint32_t k = 0; k < nasked; k++) distinct += !k || asked[k] != asked[k - 1];
    printf("{\"told\": %u, \"retry_ms\": [%d, %d], \"distinct_retry_ms\": %u, \"resumed\": %u, ", told,
           nasked ? asked[0] : -1, nasked ? asked[nasked - 1] : -1, distinct, resumed);
    double b50 = percentile(back, resumed, 0.5), b90 = percentile(back, resumed, 0.9);
    double b99 = percentile(back, resumed, 0.99), btop = percentile(back, resumed, 1.0);
    put_ms4(stdout, "back_ms", b50, b90, b99, btop);
    printf(", \"first_frame_ms_max\": ");
    put_number(stdout, 1000 * percentile(frame, framed, 1.0));
    printf(", \"failed_attempts\": %u, \"refused_attempts\": %u", storm_failed, storm_refused);
    printf(", \"first_close_monotonic\": ");
    put_number(stdout, first_close);
    printf(", \"live_n\": %zu, ", live_len);
    double l50 = percentile(live_lat, live_len, 0.5), l99 = percentile(live_lat, live_len, 0.99);
    put_ms3(stdout, "live_latency_ms", l50, l99, percentile(live_lat, live_len, 1.0));
    printf("}\n");
    fflush(stdout);
    free(back);
    free(frame);
    free(asked);
}

static void reset_step(void) {
    entry_frames = entry_wire_bytes = entry_text_bytes = compressed_frames = inflations = 0;
    lat_len = 0;
    live_len = 0;
    for (uint32_t i = 0; i < nreaders; i++) readers[i].received = 0;
}

static void compare_loop(void) {
    uint64_t *all = NULL;
    size_t nall = 0, consumed;
    for (;;) {
        char *line = next_line(&consumed);
        if (strstr(line, "\"final\"")) {
            drop_line(consumed);
            break;
        }
        if (strstr(line, "\"storm\"")) {
            drop_line(consumed);
            storm_report();
            continue;
        }
        if (!strstr(line, "\"step\"")) die("expected a step command, got %.80s", line);
        drop_line(consumed);
        reset_step();
        double cpu_start = cpu_seconds(), wall_start = monotonic();
        printf("{\"armed\": true}\n");
        fflush(stdout);
        line = next_line(&consumed);
        size_t nposted;
        uint64_t *posted = parse_list(line, "\"posted\"", &nposted);
        double t0 = parse_number(line, "\"t0\"");
        drop_line(consumed);
        all = xrealloc(all, (nall + nposted) * sizeof *all);
        memcpy(all + nall, posted, nposted * sizeof *posted);
        nall += nposted;
        drain(posted, nposted);
        double cpu = cpu_seconds() - cpu_start, wall = monotonic() - wall_start;
        uint64_t deliveries = 0, want = 0;
        for (uint32_t i = 0; i < nreaders; i++) {
            Reader *r = &readers[i];
            if (!r->member) continue;
            deliveries += r->received;
            if (!r->disconnected) want += expected[r->blog];
        }
        double last = last_receive > 0 ? last_receive : t0;
        double window = last - t0 > 1e-9 ? last - t0 : 1e-9;
        uint64_t missing = count_missing(posted, nposted, NULL);
        double p50 = percentile(lat, lat_len, 0.5), p99 = percentile(lat, lat_len, 0.99);
        double top = percentile(lat, lat_len, 1.0);
        printf("{\"deliveries\": %llu, \"expected\": %llu, \"window_s\": ", (unsigned long long)deliveries,
               (unsigned long long)want);
        put_number(stdout, window);
        printf(", \"missing\": %llu, ", (unsigned long long)missing);
        put_ms3(stdout, "latency_ms", p50, p99, top);
        fputs(", ", stdout);
        put_bytes(stdout);
        printf(", \"cpu_pct\": ");
        put_number(stdout, 100 * cpu / wall);
        printf("}\n");
        fflush(stdout);
        free(posted);
    }
    uint64_t duplicates = 0, unexpected = 0;
    for (uint32_t i = 0; i < nreaders; i++)
        if (readers[i].member) {
            duplicates += readers[i].duplicates;
            unexpected += readers[i].unexpected;
        }
    printf("{\"lost\": %llu, \"duplicates\": %llu, \"unexpected\": %llu, ",
           (unsigned long long)count_missing(all, nall, NULL), (unsigned long long)duplicates,
           (unsigned long long)unexpected);
    put_codes(stdout);
    printf("}\n");
    fflush(stdout);
    free(all);
}

static void fanout_loop(void) {
    size_t consumed, nposted;
    next_line(&consumed); /* "go": the poster starts now */
    drop_line(consumed);
    reset_step();
    double cpu_start = cpu_seconds(), wall_start = monotonic();
    char *line = next_line(&consumed);
    uint64_t *posted = parse_list(line, "\"posted\"", &nposted);
    drop_line(consumed);
    drain(posted, nposted);
    double cpu = cpu_seconds() - cpu_start, wall = monotonic() - wall_start;
    printf("{\"drained\": true}\n");
    fflush(stdout);

    uint64_t *lost = xrealloc(NULL, (size_t)nreaders * sizeof *lost);
    uint64_t total_lost = count_missing(posted, nposted, lost), got = 0, distinct = 0, deliveries = 0;
    uint64_t with_loss = 0, duplicates = 0, unexpected = 0;
    for (uint32_t i = 0; i < nreaders; i++) {
        Reader *r = &readers[i];
        if (!r->member) continue;
        got += nposted - lost[i];
        with_loss += lost[i] > 0;
        deliveries += r->received;
        distinct += r->received - r->duplicates - r->unexpected;
        duplicates += r->duplicates;
        unexpected += r->unexpected;
    }
    free(lost);
    /* per post: the first reader's latency, and how much later the last reader got it */
    double *first = xrealloc(NULL, (seen_size + 1) * sizeof *first);
    double *spread = xrealloc(NULL, (seen_size + 1) * sizeof *spread);
    size_t nfirst = 0;
    for (uint32_t s = 0; s < seen_size; s++)
        if (seq_min[s] <= seq_max[s]) {
            first[nfirst] = seq_min[s];
            spread[nfirst++] = seq_max[s] - seq_min[s];
        }
    printf("{\"deliveries\": %llu, \"of_failed_posts\": %lld, \"last_receive\": ", (unsigned long long)deliveries,
           (long long)distinct - (long long)got);
    put_number(stdout, last_receive);
    printf(", \"lost\": %llu, \"readers_with_loss\": %llu, \"duplicates\": %llu, \"unexpected\": %llu, ",
           (unsigned long long)total_lost, (unsigned long long)with_loss, (unsigned long long)duplicates,
           (unsigned long long)unexpected);
    put_codes(stdout);
    fputs(", ", stdout);
    double p50 = percentile(lat, lat_len, 0.5), p99 = percentile(lat, lat_len, 0.99);
    put_ms3(stdout, "latency_ms", p50, p99, percentile(lat, lat_len, 1.0));
    fputs(", ", stdout);
    put_ms2(stdout, "first_reader_ms", percentile(first, nfirst, 0.5), percentile(first, nfirst, 1.0));
    fputs(", ", stdout);
    put_ms2(stdout, "spread_ms", percentile(spread, nfirst, 0.5), percentile(spread, nfirst, 1.0));
    printf(", \"cpu_s\": ");
    put_number(stdout, cpu);
    printf(", \"cpu_pct\": ");
    put_number(stdout, 100 * cpu / wall);
    fputs(", ", stdout);
    put_bytes(stdout);
    printf("}\n");
    fflush(stdout);
    free(first);
    free(spread);
    free(posted);
}

/* ------------------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr, "usage: loadgen [--proto liveblog|peer] [--deflate 1] --port P --readers N "
                    "(--blogs B --seen-size S | --max-seq S)\n");
    exit(2);
}

int main(int argc, char **argv) {
    long long seen = -1;
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (!strcmp(a, "--generator")) continue; /* accepted for symmetry with the Python one */
        if (!v) usage();
        if (!strcmp(a, "--proto")) {
            if (!strcmp(v, "peer"))
                peer_proto = 1;
            else if (strcmp(v, "liveblog"))
                usage();
        } else if (!strcmp(a, "--port"))
            port = atoi(v);
        else if (!strcmp(a, "--readers"))
            nreaders = (uint32_t)atol(v);
        else if (!strcmp(a, "--blogs"))
            nblogs = (uint32_t)atol(v);
        else if (!strcmp(a, "--seen-size"))
            seen = atoll(v);
        else if (!strcmp(a, "--nap-us"))
            nap_us = atol(v);
        else if (!strcmp(a, "--deflate"))
            offer_deflate = atoi(v);
        else if (!strcmp(a, "--storm"))
            storm_window = (uint32_t)atol(v);
        else if (!strcmp(a, "--resume"))
            resume_mode = atoi(v);
        else if (!strcmp(a, "--max-seq")) {
            seen = atoll(v);
            fanout_mode = 1;
        } else
            usage();
        k++;
    }
    if (nap_us > 999999) nap_us = 999999;
    if (port <= 0 || seen < 0 || nblogs < 1 || (fanout_mode && (nblogs != 1 || peer_proto))) usage();
    seen_size = (uint32_t)seen;

    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    requests = xrealloc(NULL, nblogs * sizeof *requests);
    blog_names = xrealloc(NULL, nblogs * sizeof *blog_names);
    request_lens = xrealloc(NULL, nblogs * sizeof *request_lens);
    for (uint32_t b = 0; b < nblogs; b++) {
        char name[32], path[128];
        if (nblogs == 1)
            snprintf(name, sizeof name, "bench");
        else
            snprintf(name, sizeof name, "bench-%u", b);
        blog_names[b] = strdup(name);
        if (peer_proto)
            snprintf(path, sizeof path, "/socket.io/?EIO=4&transport=websocket&blog=%s", name);
        else
            snprintf(path, sizeof path, "/api/v1/blogs/%s/live", name);
        int n = asprintf(&requests[b],
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: ZmFub3V0LWJlbmNobWFyaw==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                         path, port,
                         offer_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
        if (n < 0) die("out of memory");
        request_lens[b] = (size_t)n;
    }
    expected = xrealloc(NULL, nblogs * sizeof *expected);
    readers = xrealloc(NULL, (size_t)nreaders * sizeof *readers);
    size_t seen_bytes = (seen_size + 7) / 8;
    uint8_t *seen_all = calloc((size_t)nreaders * seen_bytes + 1, 1);
    if (!seen_all) die("out of memory");
    for (uint32_t i = 0; i < nreaders; i++) {
        readers[i] = (Reader){.fd = -1, .state = S_IDLE, .close_code = -1, .blog = i % nblogs, .retry_ms = -1,
                              .asked_ms = -1};
        readers[i].seen = seen_all + (size_t)i * seen_bytes;
    }
    if (fanout_mode) {
        seq_min = xrealloc(NULL, (seen_size + 1) * sizeof *seq_min);
        seq_max = xrealloc(NULL, (seen_size + 1) * sizeof *seq_max);
        for (uint32_t s = 0; s < seen_size; s++) {
            seq_min[s] = INFINITY;
            seq_max[s] = -INFINITY;
        }
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));

    double started = monotonic(), last = 0;
    double *join = storm_window ? xrealloc(NULL, (size_t)nreaders * sizeof *join) : NULL;
    uint32_t members = storm_window ? open_storm(join, &last) : open_readers();
    printf("{\"ready\": %u, \"failures\": {", members);
    for (size_t k = 0; k < nreasons; k++) {
        if (k) fputs(", ", stdout);
        put_string(stdout, reasons[k].text);
        printf(": %u", reasons[k].count);
    }
    printf("}, \"connect_s\": ");
    put_number(stdout, monotonic() - started);
    if (storm_window) {
        double p50 = percentile(join, members, 0.5), p90 = percentile(join, members, 0.9);
        double p99 = percentile(join, members, 0.99), top = percentile(join, members, 1.0);
        fputs(", ", stdout);
        put_ms4(stdout, "join_ms", p50, p90, p99, top);
        printf(", \"last_s\": ");
        put_number(stdout, last);
        free(join);
    }
    printf("}\n");
    fflush(stdout);

    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_ID};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0 && errno != EPERM) /* EPERM: a file, never blocks */
        die("epoll_ctl(stdin): %s", strerror(errno));
    read_stdin();
    if (fanout_mode)
        fanout_loop();
    else
        compare_loop();
    return 0;
}
