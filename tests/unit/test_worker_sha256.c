/* SHA-256 of the worker against the FIPS 180-2 example vectors, a million
 * 'a's fed in uneven pieces, the padding boundaries (55, 56 and 64 bytes,
 * compared with one-shot hashing) and a file hash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sha256.h"

static void test_vectors(void)
{
    char hex[SHA256_HEX_SIZE];
    sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two_blocks, strlen(two_blocks), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_in_pieces(void)
{
    static char a[1000000];
    memset(a, 'a', sizeof(a));
    sha256_ctx ctx;
    sha256_init(&ctx);
    size_t done = 0, piece = 1;
    while (done < sizeof(a)) {
        size_t n = piece < sizeof(a) - done ? piece : sizeof(a) - done;
        sha256_update(&ctx, a + done, n);
        done += n;
        piece = piece * 3 % 1000 + 1;
    }
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256_final(&ctx, digest);
    char hex[SHA256_HEX_SIZE];
    for (int i = 0; i < SHA256_DIGEST_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_padding_boundaries(void)
{
    /* Hashing byte by byte must match one-shot hashing at every length
     * around the 56-byte padding boundary. */
    char data[130];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)('A' + i % 26);
    for (size_t len = 50; len <= sizeof(data); len++) {
        char one_shot[SHA256_HEX_SIZE], piecewise[SHA256_HEX_SIZE];
        sha256_hex(data, len, one_shot);
        sha256_ctx ctx;
        sha256_init(&ctx);
        for (size_t i = 0; i < len; i++)
            sha256_update(&ctx, data + i, 1);
        uint8_t digest[SHA256_DIGEST_BYTES];
        sha256_final(&ctx, digest);
        for (int i = 0; i < SHA256_DIGEST_BYTES; i++)
            snprintf(piecewise + 2 * i, 3, "%02x", digest[i]);
        CHECK_STR(piecewise, one_shot);
    }
    char hex[SHA256_HEX_SIZE];
    /* 448-bit message from FIPS 180-2 appendix B.2 is covered above; this is
     * the 896-bit one from FIPS 180-4 examples. */
    const char *long_msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(long_msg, strlen(long_msg), hex);
    CHECK_STR(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_file(void)
{
    char path[] = "/tmp/test_worker_sha256_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "abc", 3) == 3);
    close(fd);
    char hex[SHA256_HEX_SIZE];
    CHECK(sha256_file_hex(path, hex) == 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    CHECK(sha256_file_hex(path, hex) < 0);
}

int main(void)
{
    test_vectors();
    test_million_a_in_pieces();
    test_padding_boundaries();
    test_file();
    return check_report("test_worker_sha256");
}
