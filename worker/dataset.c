/* Dataset resolution and cache; see dataset.h. */
#include "dataset.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "sha256.h"

/* Checks the digest of path against expected (skipped when expected is "").
 * Returns 0 on a match, 1 on a mismatch (got is set), -1 on a read error. */
static int verify_sha256(const char *path, const char *expected, char got[SHA256_HEX_SIZE],
                         char *err, size_t err_size)
{
    if (expected == NULL || expected[0] == '\0')
        return 0;
    int rc = sha256_file_hex(path, got);
    if (rc != 0) {
        snprintf(err, err_size, "dataset %s: failed to read for dataset_sha256: %s", path,
                 strerror(-rc));
        return -1;
    }
    return strcmp(got, expected) == 0 ? 0 : 1;
}

/* Extracts the decoded path of a file:// URL; only an empty host or
 * "localhost" is accepted. */
static int file_url_path(const char *url, char *out, size_t out_size, char *err, size_t err_size)
{
    CURLU *u = curl_url();
    if (u == NULL) {
        snprintf(err, err_size, "dataset %s: out of memory", url);
        return -1;
    }
    char *host = NULL, *path = NULL;
    int result = -1;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        snprintf(err, err_size, "dataset %s: invalid URL: %s", url, curl_url_strerror(rc));
        goto out;
    }
    rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc == CURLUE_OK && host[0] != '\0' && strcmp(host, "localhost") != 0) {
        snprintf(err, err_size, "dataset %s: file:// URLs must name a local file, not host %s",
                 url, host);
        goto out;
    }
    rc = curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE);
    if (rc != CURLUE_OK) {
        snprintf(err, err_size, "dataset %s: invalid path: %s", url, curl_url_strerror(rc));
        goto out;
    }
    if (strlen(path) >= out_size) {
        snprintf(err, err_size, "dataset %s: path too long", url);
        goto out;
    }
    memcpy(out, path, strlen(path) + 1);
    result = 0;
out:
    curl_free(host);
    curl_free(path);
    curl_url_cleanup(u);
    return result;
}

static int resolve_url(const char *url, const char *expected_sha256, const char *cache_dir,
                       const http_limits *limits, dataset_source *out, char *err, size_t err_size)
{
    char dir[4096], key[SHA256_HEX_SIZE], got[SHA256_HEX_SIZE];
    int n = snprintf(dir, sizeof(dir), "%s/datasets", cache_dir);
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        snprintf(err, err_size, "dataset %s: cache directory path too long: %s", url, cache_dir);
        return -1;
    }
    int rc = paths_mkdirs(dir);
    if (rc != 0) {
        snprintf(err, err_size, "dataset %s: failed to create cache directory %s: %s (set --cache-dir)",
                 url, dir, strerror(-rc));
        return -1;
    }
    sha256_hex(url, strlen(url), key);
    n = snprintf(out->path, sizeof(out->path), "%s/%s", dir, key);
    if (n < 0 || (size_t)n >= sizeof(out->path)) {
        snprintf(err, err_size, "dataset %s: cache path too long", url);
        return -1;
    }

    /* Cache hit: no network at all. A copy with the wrong digest (the URL's
     * content changed) is fetched again. */
    if (access(out->path, R_OK) == 0) {
        rc = verify_sha256(out->path, expected_sha256, got, err, err_size);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            out->cache_hit = 1;
            return 0;
        }
        out->refetched = 1;
    }

    if (http_get_file(url, out->path, limits, err, err_size) != 0)
        return -1;
    out->downloaded = 1;
    rc = verify_sha256(out->path, expected_sha256, got, err, err_size);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        unlink(out->path);
        snprintf(err, err_size, "dataset %s: SHA-256 is %s but dataset_sha256 is %s; fix the "
                 "digest in the sweep spec or the file on the server", url, got, expected_sha256);
        return -1;
    }
    return 0;
}

int dataset_resolve(const char *dataset, const char *expected_sha256, const char *cache_dir,
                    const http_limits *limits, dataset_source *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (dataset == NULL || dataset[0] == '\0') {
        snprintf(err, err_size, "dataset: no dataset given; set the `dataset` parameter");
        return -1;
    }
    if (http_is_url(dataset))
        return resolve_url(dataset, expected_sha256, cache_dir, limits, out, err, err_size);

    if (strncmp(dataset, "file://", 7) == 0) {
        if (file_url_path(dataset, out->path, sizeof(out->path), err, err_size) != 0)
            return -1;
    } else if (strstr(dataset, "://") != NULL) {
        snprintf(err, err_size, "dataset %s: unsupported URL scheme; use a path, file://, "
                 "http:// or https://", dataset);
        return -1;
    } else {
        if (strlen(dataset) >= sizeof(out->path)) {
            snprintf(err, err_size, "dataset: path too long");
            return -1;
        }
        memcpy(out->path, dataset, strlen(dataset) + 1);
    }

    /* Only a regular file: hashing a FIFO would block the trial thread, and
     * the trainer rejects anything else anyway. */
    struct stat st;
    if (stat(out->path, &st) != 0 || access(out->path, R_OK) != 0) {
        snprintf(err, err_size, "dataset %s: failed to read: %s", out->path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "dataset %s: not a regular file; give the path of a text file",
                 out->path);
        return -1;
    }
    char got[SHA256_HEX_SIZE];
    int rc = verify_sha256(out->path, expected_sha256, got, err, err_size);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        snprintf(err, err_size, "dataset %s: SHA-256 is %s but dataset_sha256 is %s", out->path,
                 got, expected_sha256);
        return -1;
    }
    return 0;
}
