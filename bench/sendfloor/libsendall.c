/* C loop used from inside the Python process (ctypes) so the C and uvloop loops hit the same sockets,
 * in the same process, interleaved round by round. write() is what libuv uses for a 1-buffer write. */
#include <unistd.h>
long write_all(const int *fds, int n, const char *buf, int len) {
    long errs = 0;
    for (int i = 0; i < n; i++) if (write(fds[i], buf, len) != len) errs++;
    return errs;
}
