/* SHA-256 (FIPS 180-4) for dataset digests and cache file names.
 *
 * None of the project's dependencies exports a hash function, so this is a
 * small streaming implementation; tests/unit/test_worker_sha256.c checks it
 * against the standard test vectors. It is not constant-time and is not meant
 * for secrets.
 */
#ifndef SWEEPD_WORKER_SHA256_H
#define SWEEPD_WORKER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32
#define SHA256_HEX_SIZE 65 /* 64 lowercase hex digits and a NUL */

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t total_bytes;   /* message length so far */
    uint8_t block[64];      /* partial block; block_len bytes in use */
    size_t block_len;
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_BYTES]);

/* Hashes len bytes and writes the digest as lowercase hex into hex. */
void sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_SIZE]);

/* Hashes a whole file. Returns 0, or -errno of the failed open/read. */
int sha256_file_hex(const char *path, char hex[SHA256_HEX_SIZE]);

#endif
