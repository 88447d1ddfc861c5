/*
 * Golden data files for the unit tests (tests/data/<set>/NAME.<ext>): where they are, the sorted
 * names of one set, and reading one file whole. Included by the tests that need it; cmocka
 * headers come first in each of them.
 */
#ifndef HSC_TEST_GOLDEN_H
#define HSC_TEST_GOLDEN_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tests/data/<set>, found from this file's path; HSC_TEST_DATA (tests/data) overrides it. */
static void golden_dir(char *out, size_t cap, const char *set)
{
    const char *env = getenv("HSC_TEST_DATA");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s/%s", env, set);
        return;
    }
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    int dirlen = slash ? (int)(slash - file) : 1;
    snprintf(out, cap, "%.*s/../data/%s", dirlen, slash ? file : ".", set);
}

/* Reads dir/NAME EXT whole, NUL-terminated (*len excludes the NUL); NULL when it does not exist. */
static char *golden_read(const char *dir, const char *name, const char *ext, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 256, n = 0;
    char *p = malloc(cap);
    assert_non_null(p);
    for (;;) {
        n += fread(p + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        p = realloc(p, cap);
        assert_non_null(p);
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

static int golden_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The names (without EXT) of the files of `dir` ending in EXT, sorted, malloc()ed into names[]
 * (at most cap). Fails the test when the directory is missing or holds fewer than `min`: an
 * emptied set must fail, not pass with nothing checked.
 */
static size_t golden_names(const char *dir, const char *ext, char **names, size_t cap, size_t min)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        fail_msg("cannot open the golden files in %s (set HSC_TEST_DATA)", dir);
    size_t count = 0, el = strlen(ext);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= el || strcmp(de->d_name + n - el, ext) != 0)
            continue;
        assert_true(count < cap);
        names[count] = malloc(n - el + 1);
        assert_non_null(names[count]);
        memcpy(names[count], de->d_name, n - el);
        names[count][n - el] = '\0';
        count++;
    }
    closedir(d);
    assert_true(count >= min);
    qsort(names, count, sizeof names[0], golden_cmp);
    return count;
}

#endif
