/* Background start of sweepd: fork, setsid, fork again, so the daemon is no
 * session leader and can never regain a controlling terminal. A pipe with
 * close-on-exec carries one line, "ready PID", from the daemon to the process
 * that started it. End of file without that line means the daemon failed,
 * and its log lines since the fork explain why.
 */
#include "detach.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Startup log bytes copied to the terminal when the daemon fails. */
#define DETACH_MAX_LOG_COPY_BYTES (64 * 1024)

/* Copies log_path from offset to stderr, at most DETACH_MAX_LOG_COPY_BYTES. */
static void copy_log_tail(const char *log_path, off_t offset)
{
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lseek(fd, offset, SEEK_SET) < 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char buf[4096];
    size_t copied = 0;
    while (copied < DETACH_MAX_LOG_COPY_BYTES) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (write(STDERR_FILENO, buf, (size_t)n) != n)
            break;
        copied += (size_t)n;
    }
    close(fd);
}

/* Runs in the starting process: waits for the daemon's ready line and exits. */
static void wait_for_ready(int read_fd, pid_t child, const char *log_path, off_t log_offset)
{
    /* The intermediate child exits at once after the second fork. */
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }

    char line[64];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        ssize_t n = read(read_fd, line + len, sizeof(line) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    line[len] = '\0';
    close(read_fd);

    long pid = 0;
    if (sscanf(line, "ready %ld", &pid) == 1 && pid > 0) {
        printf("sweepd: running in the background as pid %ld; log in %s\n", pid, log_path);
        fflush(stdout);
        exit(0);
    }
    copy_log_tail(log_path, log_offset);
    fprintf(stderr, "sweepd: the daemon did not start; the lines above come from its log %s\n", log_path);
    exit(1);
}

int detach_start(const char *log_path, int *ready_fd)
{
    *ready_fd = -1;
    int log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "sweepd: opening the log %s failed: %s; pass --foreground to log to stderr\n", log_path,
                strerror(errno));
        return -1;
    }
    off_t log_offset = lseek(log_fd, 0, SEEK_END);
    if (log_offset < 0)
        log_offset = 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "sweepd: creating a pipe failed: %s\n", strerror(errno));
        close(log_fd);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);

    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "sweepd: fork failed: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        close(log_fd);
        return -1;
    }
    if (child > 0) {
        close(fds[1]);
        close(log_fd);
        wait_for_ready(fds[0], child, log_path, log_offset);
    }

    /* The intermediate child: a new session, then the daemon is forked off. */
    close(fds[0]);
    if (setsid() < 0) {
        fprintf(stderr, "sweepd: setsid failed: %s\n", strerror(errno));
        _exit(1);
    }
    pid_t daemon_pid = fork();
    if (daemon_pid < 0) {
        fprintf(stderr, "sweepd: the second fork failed: %s\n", strerror(errno));
        _exit(1);
    }
    if (daemon_pid > 0)
        _exit(0);

    /* The daemon: stdin and stdout from and to /dev/null, stderr to the log. */
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(null_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0) {
        fprintf(stderr, "sweepd: redirecting stdin, stdout and stderr failed: %s\n", strerror(errno));
        _exit(1);
    }
    close(null_fd);
    close(log_fd);
    *ready_fd = fds[1];
    return 0;
}

void detach_ready(int ready_fd)
{
    if (ready_fd < 0)
        return;
    char line[48];
    int len = snprintf(line, sizeof(line), "ready %ld\n", (long)getpid());
    ssize_t n;
    do {
        n = write(ready_fd, line, (size_t)len);
    } while (n < 0 && errno == EINTR);
    /* A failed write leaves the starting process at end of file, so it exits
     * 1 and says the daemon did not start; the daemon keeps serving. */
    close(ready_fd);
}
