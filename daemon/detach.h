/* Running sweepd in the background: a double fork and setsid, with a pipe
 * that keeps the starting process waiting until the daemon listens. The
 * starting process exits 0 once the daemon reports ready, or 1 after copying
 * the daemon's startup log lines to its own stderr. --foreground skips all of
 * this.
 */
#ifndef SWEEPD_DETACH_H
#define SWEEPD_DETACH_H

/* Detaches the calling process. Returns only in the daemon process: its
 * stdin and stdout are /dev/null, its stderr is appended to log_path, and
 * *ready_fd is the pipe end for detach_ready(). The process that called it
 * never returns: it exits 0 when the daemon reports ready and 1 otherwise.
 * Returns -1 (in the calling process, still attached, with errno-based text
 * on stderr) when the pipe, a fork or the log file fails. */
int detach_start(const char *log_path, int *ready_fd);

/* Tells the waiting process that the daemon serves requests, then closes
 * ready_fd. A negative ready_fd (foreground mode) does nothing. */
void detach_ready(int ready_fd);

#endif
