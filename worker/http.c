/* libcurl transfers for datasets and checkpoints; see http.h. One easy handle
 * per transfer: the worker makes a few transfers per trial, so connection
 * reuse is not worth a shared handle across threads.
 */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void http_limits_default(http_limits *limits)
{
    limits->connect_timeout_s = 10;
    limits->low_speed_time_s = 30;
    limits->low_speed_bytes = 1;
    limits->max_bytes = 4LL << 30;
    limits->stop = NULL;
}

int http_is_url(const char *text)
{
    return strncmp(text, "http://", 7) == 0 || strncmp(text, "https://", 8) == 0;
}

/* State of one download, shared with the write callback. */
typedef struct download {
    int fd;
    long long written_bytes;
    long long max_bytes;
    int too_large;   /* set by the callback when max_bytes would be exceeded */
    int write_errno; /* errno of a failed write(2), or 0 */
} download;

static size_t write_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    download *dl = userdata;
    size_t n = size * nmemb;

    /* CURLOPT_MAXFILESIZE_LARGE only works when the server sends a length;
     * this check also covers chunked replies. */
    if (dl->max_bytes > 0 && dl->written_bytes + (long long)n > dl->max_bytes) {
        dl->too_large = 1;
        return 0;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(dl->fd, data + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            dl->write_errno = errno;
            return 0;
        }
        done += (size_t)w;
    }
    dl->written_bytes += (long long)n;
    return n;
}

static int check_stop(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                      curl_off_t ulnow)
{
    atomic_int *stop = clientp;
    return stop != NULL && atomic_load(stop) != 0;
}

/* Applies the options every transfer shares. Returns the first failing code. */
static CURLcode set_common(CURL *curl, const char *url, const http_limits *limits, char *errbuf)
{
    CURLcode rc = CURLE_OK;
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_URL, url);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_MAXREDIRS, HTTP_MAX_REDIRECTS);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, limits->connect_timeout_s);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, limits->low_speed_time_s);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, limits->low_speed_bytes);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_stop);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)limits->stop);
    return rc;
}

/* Runs the transfer and turns its outcome into 0 or -1 with err naming the
 * method, the URL and the HTTP status or curl error. *result receives
 * curl's code, so the caller can word a known failure more precisely. */
static int perform(CURL *curl, const char *method, const char *url, const char *errbuf,
                   int allow_404, CURLcode *result, char *err, size_t err_size)
{
    CURLcode rc = curl_easy_perform(curl);
    *result = rc;
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "%s %s failed: %s", method, url,
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return -1;
    }
    long status = 0;
    rc = curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "%s %s: no HTTP status: %s", method, url, curl_easy_strerror(rc));
        return -1;
    }
    if ((status >= 200 && status < 300) || (allow_404 && status == 404))
        return 0;
    snprintf(err, err_size, "%s %s failed: HTTP status %ld", method, url, status);
    return -1;
}

/* Rewrites err for the GET failures whose curl text does not say what to
 * do: a body above max_bytes, a failed write into the cache, a redirect
 * loop and a body shorter than its Content-Length. Others keep perform's
 * text. */
static void describe_get_failure(const download *dl, CURLcode code, const char *url,
                                 const char *tmp_path, const http_limits *limits,
                                 const char *errbuf, char *err, size_t err_size)
{
    if (dl->too_large || code == CURLE_FILESIZE_EXCEEDED)
        snprintf(err, err_size, "GET %s failed: the body is larger than the limit of %lld bytes",
                 url, limits->max_bytes);
    else if (dl->write_errno)
        snprintf(err, err_size, "GET %s failed: writing %s: %s", url, tmp_path,
                 strerror(dl->write_errno));
    else if (code == CURLE_TOO_MANY_REDIRECTS)
        snprintf(err, err_size, "GET %s failed: more than %ld redirects (a redirect loop?); "
                 "use the final URL", url, HTTP_MAX_REDIRECTS);
    else if (code == CURLE_PARTIAL_FILE)
        snprintf(err, err_size, "GET %s failed: the body ended before its Content-Length (%s); "
                 "the server or a proxy cut the transfer", url,
                 errbuf[0] ? errbuf : curl_easy_strerror(code));
}

int http_get_file(const char *url, const char *dest_path, const http_limits *limits,
                  char *err, size_t err_size)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    char tmp_path[4096];
    int n = snprintf(tmp_path, sizeof(tmp_path), "%s.tmp.XXXXXX", dest_path);
    if (n < 0 || (size_t)n >= sizeof(tmp_path)) {
        snprintf(err, err_size, "GET %s: destination path too long: %s", url, dest_path);
        return -1;
    }

    /* A unique temporary name, so two workers downloading the same URL into
     * one cache never write the same file. */
    download dl = {.fd = mkstemp(tmp_path), .max_bytes = limits->max_bytes};
    if (dl.fd < 0) {
        snprintf(err, err_size, "GET %s: failed to create %s: %s", url, tmp_path, strerror(errno));
        return -1;
    }

    CURL *curl = curl_easy_init();
    int result = -1;
    if (curl == NULL) {
        snprintf(err, err_size, "GET %s: curl_easy_init failed", url);
        goto out;
    }
    CURLcode rc = set_common(curl, url, limits, errbuf);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_WRITEDATA, &dl);
    if (!rc && limits->max_bytes > 0)
        rc = curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)limits->max_bytes);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_FAILONERROR, 0L);
    /* "" offers every encoding this libcurl decodes (gzip, deflate and
     * others when built in), so the file contains the decoded body, and the size
     * limit and dataset_sha256 apply to the decoded bytes. */
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "GET %s: curl option failed: %s", url, curl_easy_strerror(rc));
        goto out;
    }

    CURLcode result_code;
    if (perform(curl, "GET", url, errbuf, 0, &result_code, err, err_size) != 0) {
        describe_get_failure(&dl, result_code, url, tmp_path, limits, errbuf, err, err_size);
        goto out;
    }

    if (fsync(dl.fd) != 0) {
        snprintf(err, err_size, "GET %s: fsync %s: %s", url, tmp_path, strerror(errno));
        goto out;
    }
    if (close(dl.fd) != 0) {
        dl.fd = -1;
        snprintf(err, err_size, "GET %s: close %s: %s", url, tmp_path, strerror(errno));
        goto out;
    }
    dl.fd = -1;
    if (rename(tmp_path, dest_path) != 0) {
        snprintf(err, err_size, "GET %s: rename %s to %s: %s", url, tmp_path, dest_path,
                 strerror(errno));
        goto out;
    }
    result = 0;

out:
    if (curl != NULL)
        curl_easy_cleanup(curl);
    if (dl.fd >= 0)
        close(dl.fd);
    if (result != 0)
        unlink(tmp_path);
    return result;
}

int http_put_file(const char *url, const char *src_path, const http_limits *limits,
                  char *err, size_t err_size)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    FILE *src = fopen(src_path, "rb");
    if (src == NULL) {
        snprintf(err, err_size, "PUT %s: failed to open %s: %s", url, src_path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(src), &st) != 0) {
        snprintf(err, err_size, "PUT %s: stat %s: %s", url, src_path, strerror(errno));
        fclose(src);
        return -1;
    }

    CURL *curl = curl_easy_init();
    int result = -1;
    if (curl == NULL) {
        snprintf(err, err_size, "PUT %s: curl_easy_init failed", url);
        goto out;
    }
    /* The default read callback reads the FILE * given as CURLOPT_READDATA. */
    CURLcode rc = set_common(curl, url, limits, errbuf);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_READDATA, src);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "PUT %s: curl option failed: %s", url, curl_easy_strerror(rc));
        goto out;
    }
    CURLcode result_code;
    result = perform(curl, "PUT", url, errbuf, 0, &result_code, err, err_size);

out:
    if (curl != NULL)
        curl_easy_cleanup(curl);
    fclose(src);
    return result;
}

static size_t discard_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}

int http_delete(const char *url, const http_limits *limits, char *err, size_t err_size)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(err, err_size, "DELETE %s: curl_easy_init failed", url);
        return -1;
    }
    CURLcode rc = set_common(curl, url, limits, errbuf);
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    if (!rc) rc = curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    int result = -1;
    CURLcode result_code;
    if (rc != CURLE_OK)
        snprintf(err, err_size, "DELETE %s: curl option failed: %s", url, curl_easy_strerror(rc));
    else
        result = perform(curl, "DELETE", url, errbuf, 1, &result_code, err, err_size);
    curl_easy_cleanup(curl);
    return result;
}
