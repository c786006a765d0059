/* xoshiro256** with splitmix64 seeding (see rng.h). Written from the
 * published algorithm descriptions: xoshiro256** next() is
 * rotl(s1 * 5, 7) * 9 followed by the xor/shift/rotate state update. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rng_seed(rng_state *rng, uint64_t seed, uint64_t stream)
{
    /* Mix the stream into the seed so that streams of one seed differ in
     * every word; splitmix64 never yields an all-zero state from 4 draws. */
    uint64_t x = seed ^ (stream * UINT64_C(0xd1b54a32d192ed03));
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

uint64_t rng_next(rng_state *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rng_below(rng_state *rng, uint64_t n)
{
    /* Reject the top partial range so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rng_next(rng);
    } while (x >= limit);
    return x % n;
}

double rng_uniform(rng_state *rng)
{
    return (double)(rng_next(rng) >> 11) * 0x1.0p-53;
}

double rng_normal(rng_state *rng)
{
    /* u1 in (0, 1] keeps log() finite. */
    double u1 = 1.0 - rng_uniform(rng);
    double u2 = rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
