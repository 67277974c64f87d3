/* test.h — the tiny harness every C test uses.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, tol); }
 *   int main(void) { RUN(name); return test_summary(); }
 *
 * test_summary() prints "N passed, N failed" and returns the exit code. */
#ifndef TILEC_TEST_H
#define TILEC_TEST_H

#include <stdbool.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_cur_failed;

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                   \
    do {                                                            \
        test_cur_failed = 0;                                        \
        test_##name();                                              \
        if (test_cur_failed) {                                      \
            test_failed++;                                          \
            printf("FAIL  %s\n", #name);                            \
        } else {                                                    \
            test_passed++;                                          \
            printf("ok    %s\n", #name);                            \
        }                                                           \
        fflush(stdout);                                             \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            test_cur_failed = 1;                                             \
        }                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
            test_cur_failed = 1;                                              \
        }                                                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
    do {                                                                       \
        double a_ = (a), b_ = (b);                                             \
        if (!(fabs(a_ - b_) <= (tol)) ) {                                      \
            printf("  %s:%d: %s = %g, %s = %g, |diff| %g > %g\n", __FILE__,    \
                   __LINE__, #a, a_, #b, b_, fabs(a_ - b_), (double)(tol));    \
            test_cur_failed = 1;                                               \
        }                                                                      \
    } while (0)

static inline int test_summary(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

/* Whether to run the largest shapes (Flash prefills, 64K contexts): not
 * under the sanitizers, where they take minutes; the plain build runs
 * them.  Says "skipped" once. */
static inline bool test_large_shapes(void)
{
#ifdef TILEC_SANITIZED
    static bool said;
    if (!said)
        printf("skipped: the largest shapes under the sanitizers (the plain build runs them)\n");
    said = true;
    return false;
#else
    return true;
#endif
}

/* Deterministic inputs: xorshift, uniform in [-1, 1). */
static inline float test_rand(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)((*s >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

/* An f32 from its bits and back. */
static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

#endif
