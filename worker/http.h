/* HTTP transfers for the worker through libcurl: download a URL into a file
 * atomically, upload a file with PUT, delete a URL.
 *
 * Every transfer is blocking and runs on the trial thread, never on the event
 * loop. Each has a connect timeout, a low-speed timeout (a stalled server
 * fails instead of hanging), a size limit on downloads, and aborts when the
 * caller's stop flag becomes nonzero. Errors name the URL and either the HTTP
 * status or curl's error text.
 */
#ifndef SWEEPD_WORKER_HTTP_H
#define SWEEPD_WORKER_HTTP_H

#include <stdatomic.h>
#include <stddef.h>

/* Redirects followed per transfer; one more fails it (a redirect loop). */
#define HTTP_MAX_REDIRECTS 5L

typedef struct http_limits {
    long connect_timeout_s;   /* TCP and TLS connect */
    long low_speed_time_s;    /* fail when below low_speed_bytes for this long */
    long low_speed_bytes;     /* bytes per second */
    long long max_bytes;      /* largest accepted download; 0 = no limit */
    atomic_int *stop;         /* optional; nonzero aborts the transfer */
} http_limits;

/* Defaults: 10 s connect, under 1 byte/s for 30 s is a stall, 4 GiB. */
void http_limits_default(http_limits *limits);

/* Downloads url into dest_path: the body goes to a unique temporary file in
 * the same directory, which is fsynced and renamed over dest_path only after a
 * 2xx reply, so readers never see a partial file. A Content-Encoding that
 * libcurl supports (gzip, deflate) is decoded, and max_bytes bounds the
 * decoded body. Returns 0, or -1 with err set (HTTP status, a body above
 * max_bytes or shorter than its Content-Length, more than HTTP_MAX_REDIRECTS
 * redirects, a stall, a stop request); on failure the temporary file is
 * removed and dest_path is untouched. */
int http_get_file(const char *url, const char *dest_path, const http_limits *limits,
                  char *err, size_t err_size);

/* Uploads the file at src_path with PUT. Any 2xx reply is success. */
int http_put_file(const char *url, const char *src_path, const http_limits *limits,
                  char *err, size_t err_size);

/* Sends DELETE; 2xx and 404 count as success. */
int http_delete(const char *url, const http_limits *limits, char *err, size_t err_size);

/* Returns 1 when text starts with http:// or https://. */
int http_is_url(const char *text);

#endif
