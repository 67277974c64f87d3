/* test_tuned.c — the sweep's results store (runtime/tuned.c): records in
 * canonical form, the fastest matching record, and a store that does not
 * parse refused with its file and line and left as it was. */
#include "test.h"
#include "runtime/tuned.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

TEST(settings_join_sorted_and_plain_and_split_back)
{
    RtSetting s[] = {{"N", "40"}, {"BM", "24"}, {"M", "70"}};
    char out[64];
    CHECK(rt_tuned_join(s, 3, out, sizeof out));
    CHECKF(!strcmp(out, "BM=24,M=70,N=40"), "%s", out);
    CHECK(rt_tuned_join(s, 0, out, sizeof out) && !strcmp(out, "-"));
    RtSetting comma[] = {{"BM", "2,4"}}, eq[] = {{"B=M", "2"}}, empty[] = {{"BM", ""}};
    CHECK(!rt_tuned_join(comma, 1, out, sizeof out));
    CHECK(!rt_tuned_join(eq, 1, out, sizeof out));
    CHECK(!rt_tuned_join(empty, 1, out, sizeof out));
    CHECK(!rt_tuned_join(s, 3, out, 8)); /* does not fit */
    /* and back: the joined list splits into the same settings */
    RtSetting back[4];
    char joined[64] = "BM=24,M=70,N=40", none[] = "-", bad[] = "BM=24,M", many[] = "A=1,B=2,C=3,D=4,E=5";
    CHECK(rt_tuned_split(joined, back, 4) == 3);
    CHECK(!strcmp(back[0].name, "BM") && !strcmp(back[0].value, "24") && !strcmp(back[2].name, "N") &&
          !strcmp(back[2].value, "40"));
    CHECK(rt_tuned_split(none, back, 4) == 0);
    CHECK(rt_tuned_split(bad, back, 4) == -1);
    CHECK(rt_tuned_split(many, back, 4) == -1);
}

TEST(fastest_matching_record)
{
    const char *p = path_of("store.tsv");
    char lines[1024] = "", line[256];
    const struct {
        const char *kernel, *target, *fixed, *point;
        double ms;
    } recs[] = {
        {"gemm", "x86-avx2", "K=64,M=70", "BM=24", 3.0},
        {"gemm", "x86-avx2", "K=64,M=70", "BM=48", 2.0},
        {"gemm", "x86-avx2", "K=64,M=700", "BM=96", 1.0},  /* other sizes */
        {"gemm", "x86-avx512", "K=64,M=70", "BM=192", 0.5}, /* other target */
        {"softmax", "x86-avx2", "-", "BM=4", 0.1},         /* other kernel */
    };
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        CHECK(rt_tuned_line(recs[i].kernel, recs[i].target, 1, recs[i].fixed, recs[i].point, recs[i].ms, line,
                            sizeof line));
        strcat(lines, line);
    }
    Diag d = {0};
    CHECK(rt_tuned_append(p, lines, &d));
    const char *text = slurp(p);
    CHECK(text && text[0] == '#' && strstr(text, "gemm\tx86-avx2\t1\tK=64,M=70\tBM=48\t2\n"));
    RtSetting want[] = {{"M", "70"}, {"K", "64"}, {"BN", "32"}}, seven[] = {{"M", "7"}, {"K", "64"}};
    char point[64];
    double ms;
    CHECK(rt_tuned_best(p, "gemm", "x86-avx2", want, 3, point, sizeof point, &ms, &d));
    CHECKF(!strcmp(point, "BM=48") && ms == 2.0, "%s %g", point, ms);
    CHECK(rt_tuned_best(p, "gemm", "x86-avx2", seven, 2, point, sizeof point, &ms, &d) && isinf(ms));
    CHECK(rt_tuned_best(p, "softmax", "x86-avx2", seven, 0, point, sizeof point, &ms, &d));
    CHECKF(!strcmp(point, "BM=4") && ms == 0.1, "%s %g", point, ms);
    /* appending keeps what was there */
    CHECK(rt_tuned_line("gemm", "x86-avx2", 2, "K=64,M=70", "BM=96", 1.5, line, sizeof line));
    CHECK(rt_tuned_append(p, line, &d));
    CHECK(rt_tuned_best(p, "gemm", "x86-avx2", want, 3, point, sizeof point, &ms, &d));
    CHECKF(!strcmp(point, "BM=96") && ms == 1.5, "%s %g", point, ms);
    CHECK(!d.set);
    remove(p);
}

/* A sweep compares its points as the store will hold them (rt_tuned_ms):
 * two times that differ past the record's digits are equal there, and the
 * store keeps the first, so the sweep must call the first the best too
 * (cli_sweep once reported BM=48 best while the store gave BM=24). */
TEST(a_sweep_compares_times_as_the_store_keeps_them)
{
    const char *p = path_of("ties.tsv");
    double first = 0.0071234567, second = 0.0071234561; /* 0.00712346 both, recorded */
    CHECK(second < first && rt_tuned_ms(first) == rt_tuned_ms(second));
    CHECK(rt_tuned_ms(2.0) == 2.0 && rt_tuned_ms(0.1) == 0.1);
    char lines[512] = "", line[256];
    CHECK(rt_tuned_line("gemm", "x86-avx2", 1, "M=70", "BM=24", first, line, sizeof line));
    strcat(lines, line);
    CHECK(rt_tuned_line("gemm", "x86-avx2", 1, "M=70", "BM=48", second, line, sizeof line));
    strcat(lines, line);
    Diag d = {0};
    CHECK(rt_tuned_append(p, lines, &d));
    RtSetting m[] = {{"M", "70"}};
    char point[64];
    double ms;
    CHECK(rt_tuned_best(p, "gemm", "x86-avx2", m, 1, point, sizeof point, &ms, &d));
    CHECKF(!strcmp(point, "BM=24") && ms == rt_tuned_ms(first), "%s %g", point, ms);
    remove(p);
}

TEST(a_store_that_does_not_parse_is_refused_and_kept)
{
    const char *p = path_of("bad.tsv");
    const char *text = "# comment\ngemm\tx86-avx2\t1\tM=70\tBM=24\t2.5\n\ngemm\tx86-avx2\tone\tM=70\tBM=24\t2.5\n";
    write_file(p, text);
    Diag d = {0};
    char point[64];
    double ms;
    RtSetting m[] = {{"M", "70"}};
    CHECK(!rt_tuned_best(p, "gemm", "x86-avx2", m, 1, point, sizeof point, &ms, &d));
    CHECK(d.set && d.loc.line == 4 && !strcmp(d.loc.file, p) && strstr(d.msg, "not a results record"));
    Diag d2 = {0};
    CHECK(!rt_tuned_append(p, "gemm\tx86-avx2\t1\tM=70\tBM=48\t1\n", &d2) && d2.set && d2.loc.line == 4);
    CHECK(!strcmp(slurp(p), text));
    const char *bad_fields[] = {"gemm\tx86-avx2\t1\tM=70\tBM=24\n", "gemm\tx86-avx2\t1\tM=70\tBM=24\t2\textra\n",
                                "gemm\tx86-avx2\t1\tM=70\tBM=24\tfast\n", "gemm\tx86-avx2\t1\t\tBM=24\t2\n",
                                "gemm\tx86-avx2\t1\tM=70\tBM=24\tnan\n"};
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        write_file(p, bad_fields[i]);
        Diag e = {0};
        CHECKF(!rt_tuned_best(p, "gemm", "x86-avx2", m, 1, point, sizeof point, &ms, &e) && e.loc.line == 1,
               "accepted: %s", bad_fields[i]);
    }
    Diag e = {0};
    CHECK(!rt_tuned_best(path_of("missing.tsv"), "gemm", "x86-avx2", m, 1, point, sizeof point, &ms, &e));
    CHECK(strstr(e.msg, "cannot read the results store"));
    remove(p);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/tilec_tuned_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(settings_join_sorted_and_plain_and_split_back);
    RUN(fastest_matching_record);
    RUN(a_sweep_compares_times_as_the_store_keeps_them);
    RUN(a_store_that_does_not_parse_is_refused_and_kept);
    rmdir(dir);
    return test_summary();
}
