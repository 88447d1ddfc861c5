/*
 * What the Redis engine parses without sockets (pubsub/redis_wire.c): --redis URLs, the live
 * notices of its pub/sub channels and its stream entries, read from raw RESP bytes with hiredis's
 * reply reader as the engine reads them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "pubsub/redis.h"

static hsc_redis_url_t url;

static int parse(const char *s)
{
    const char *why = NULL;
    int rc = hsc_redis_url_parse(s, &url, &why);
    if (rc != 0)
        assert_non_null(why); /* every refusal says why */
    return rc;
}

static void test_url_tcp(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://127.0.0.1:6380"), 0);
    assert_string_equal(url.host, "127.0.0.1");
    assert_int_equal(url.port, 6380);
    assert_string_equal(url.password, "");
    assert_int_equal(url.db, 0);
    assert_string_equal(url.path, "");
    assert_int_equal(parse("redis://localhost"), 0); /* the default port */
    assert_string_equal(url.host, "localhost");
    assert_int_equal(url.port, 6379);
    assert_int_equal(parse("redis://localhost/"), 0);
    assert_int_equal(parse("redis://[::1]:7000/3"), 0);
    assert_string_equal(url.host, "::1");
    assert_int_equal(url.port, 7000);
    assert_int_equal(url.db, 3);
}

static void test_url_password(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://:s3cr@t@10.0.0.1:6379/2"), 0); /* the last @ ends it */
    assert_string_equal(url.password, "s3cr@t");
    assert_string_equal(url.host, "10.0.0.1");
    assert_int_equal(url.db, 2);
    assert_int_equal(parse("redis://user:pw@host:1"), HSC_EINVAL); /* no ACL users */
    assert_int_equal(parse("redis://:@host:1"), HSC_EINVAL);
}

static void test_url_unix(void **state)
{
    (void)state;
    assert_int_equal(parse("unix:///run/redis/redis.sock"), 0);
    assert_string_equal(url.path, "/run/redis/redis.sock");
    assert_string_equal(url.host, "");
    assert_int_equal(parse("unix:///tmp/r.sock?db=5"), 0);
    assert_int_equal(url.db, 5);
    assert_int_equal(parse("unix://relative.sock"), HSC_EINVAL);
    assert_int_equal(parse("unix:///tmp/r.sock?x=1"), HSC_EINVAL);
    char longpath[200] = "unix:///";
    memset(longpath + 8, 'a', 150);
    longpath[158] = '\0';
    assert_int_equal(parse(longpath), HSC_EINVAL);
}

static void test_url_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://:6379",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:12x",
        "redis://host:",
        "redis://host/db",
        "redis://host/-1",
        "redis://[::1",
        "redis://[::1]x",
        "redis://ho st:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(bad[i]), HSC_EINVAL);
    assert_int_equal(hsc_redis_url_parse(NULL, &url, NULL), HSC_EINVAL);
}

static void test_notice(void **state)
{
    (void)state;
    hsc_redis_notice_t n;
    const char ok[] = "1796000000000 42 17 price\nline 1\nline 2";
    assert_int_equal(hsc_redis_notice_parse(ok, sizeof ok - 1, &n), 0);
    assert_true(n.epoch == 1796000000000ull);
    assert_int_equal(n.seq, 42);
    assert_int_equal(n.prev, 17);
    assert_int_equal(n.type_len, 5);
    assert_memory_equal(n.type, "price", 5);
    assert_int_equal(n.len, 13);
    assert_memory_equal(n.data, "line 1\nline 2", 13);
    const char notype[] = "5 1 0 \n";
    assert_int_equal(hsc_redis_notice_parse(notype, sizeof notype - 1, &n), 0);
    assert_int_equal(n.type_len, 0);
    assert_int_equal(n.len, 0);
    const char *bad[] = {
        "5 1 0 x",                         /* no newline */
        "5 1 \n",                          /* a number missing */
        "5 x 0 t\n",                       /* not a number */
        "5 0 0 t\n",                       /* SEQ 0 */
        "5 99999999999999999999999 0 t\n", /* past 64 bits */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(hsc_redis_notice_parse(bad[i], strlen(bad[i]), &n), HSC_EINVAL);
}

/* Feeds RESP bytes to a reader as the engine does (in two pieces) and returns the reply. */
static redisReply *read_reply(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    size_t len = strlen(resp), half = len / 2;
    void *out = NULL;
    assert_int_equal(redisReaderFeed(rd, resp, half), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &out), REDIS_OK);
    assert_null(out); /* half a reply is no reply */
    assert_int_equal(redisReaderFeed(rd, resp + half, len - half), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &out), REDIS_OK);
    assert_non_null(out);
    redisReaderFree(rd);
    return out;
}

static void test_entry(void **state)
{
    (void)state;
    redisReply *x = read_reply("*2\r\n$4\r\n43-0\r\n*6\r\n$1\r\nt\r\n$0\r\n\r\n$1\r\nd\r\n"
                               "$5\r\nhello\r\n$1\r\np\r\n$2\r\n17\r\n");
    hsc_redis_notice_t n;
    assert_int_equal(hsc_redis_entry_parse(x, &n), 0);
    assert_int_equal(n.seq, 43);
    assert_int_equal(n.prev, 17);
    assert_int_equal(n.type_len, 0);
    assert_int_equal(n.len, 5);
    assert_memory_equal(n.data, "hello", 5);
    freeReplyObject(x);
    /* A whole XRANGE answer: an array of entries, each parsed alone. */
    x = read_reply("*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nd\r\n$1\r\na\r\n$1\r\np\r\n$1\r\n0\r\n"
                   "*2\r\n$3\r\n2-0\r\n*4\r\n$1\r\nt\r\n$3\r\nmsg\r\n$1\r\nd\r\n$1\r\nb\r\n");
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    assert_int_equal(x->elements, 2);
    assert_int_equal(hsc_redis_entry_parse(x->element[0], &n), 0);
    assert_int_equal(n.seq, 1);
    assert_int_equal(hsc_redis_entry_parse(x->element[1], &n), 0);
    assert_int_equal(n.seq, 2);
    assert_int_equal(n.type_len, 3);
    freeReplyObject(x);
    /* Malformed: no data field, a bad id, a bad prev, not an entry at all. */
    const char *bad[] = {
        "*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$1\r\n0\r\n",
        "*2\r\n$3\r\nx-0\r\n*2\r\n$1\r\nd\r\n$1\r\na\r\n",
        "*2\r\n$3\r\n0-0\r\n*2\r\n$1\r\nd\r\n$1\r\na\r\n",
        "*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nd\r\n$1\r\na\r\n$1\r\np\r\n$1\r\nz\r\n",
        "*1\r\n$3\r\n1-0\r\n",
        ":5\r\n",
        "-ERR no\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        x = read_reply(bad[i]);
        assert_int_equal(hsc_redis_entry_parse(x, &n), HSC_EINVAL);
        freeReplyObject(x);
    }
    assert_int_equal(hsc_redis_entry_parse(NULL, &n), HSC_EINVAL);
}

int main(int argc, char **argv)
{
    /* One test per line: tests/CMakeLists.txt registers them line by line. */
    // clang-format off
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_tcp),
        cmocka_unit_test(test_url_password),
        cmocka_unit_test(test_url_unix),
        cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_notice),
        cmocka_unit_test(test_entry),
    };
    // clang-format on
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
