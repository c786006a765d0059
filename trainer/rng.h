/* The trainer's random number generator: xoshiro256** (Blackman and Vigna,
 * 2018) seeded through splitmix64. Deterministic on every platform; its whole
 * state is four 64-bit words, which checkpoints store.
 *
 * Streams: rng_seed(seed, stream) derives independent generators from one
 * user seed (stream 0 initialises the weights, stream 1 samples batches).
 */
#ifndef SWEEPD_RNG_H
#define SWEEPD_RNG_H

#include <stdint.h>

typedef struct rng_state {
    uint64_t s[4];
} rng_state;

void rng_seed(rng_state *rng, uint64_t seed, uint64_t stream);
uint64_t rng_next(rng_state *rng);
/* Uniform integer in [0, n), n >= 1, without modulo bias (rejection). */
uint64_t rng_below(rng_state *rng, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double rng_uniform(rng_state *rng);
/* Standard normal by the Box-Muller transform (one draw per call). */
double rng_normal(rng_state *rng);

#endif
