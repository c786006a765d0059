/* json_kinds: literal kinds paired with cJSON nodes (integers, floats,
 * numbers inside strings, trailing text), underflow detection, mismatch
 * rejection, and json_kinds_print round trips that keep every kind.
 */
#include <string.h>

#include <cJSON.h>

#include "check.h"
#include "json_kinds.h"

static void test_kinds_basic(void)
{
    const char *text = "{\"a\":0,\"b\":0.0,\"s\":\"1.5 and 2\",\"c\":[1e3,-0,-7,2E-1,1.0],"
                       "\"d\":{\"x\\\"y\":12345678901234567890,\"t\":true,\"n\":null},\"e\":1e-400}";
    cJSON *root = cJSON_Parse(text);
    json_kinds *k;

    CHECK(root != NULL);
    if (!root)
        return;
    k = json_kinds_scan(text, strlen(text), root);
    CHECK(k != NULL);
    if (k) {
        const cJSON *c = cJSON_GetObjectItem(root, "c");
        const cJSON *d = cJSON_GetObjectItem(root, "d");
        CHECK(json_kinds_is_integer(k, cJSON_GetObjectItem(root, "a")) == 1);
        CHECK(json_kinds_is_integer(k, cJSON_GetObjectItem(root, "b")) == 0);
        CHECK(json_kinds_is_integer(k, cJSON_GetArrayItem(c, 0)) == 0);
        CHECK(json_kinds_is_integer(k, cJSON_GetArrayItem(c, 1)) == 1);
        CHECK(json_kinds_is_integer(k, cJSON_GetArrayItem(c, 2)) == 1);
        CHECK(json_kinds_is_integer(k, cJSON_GetArrayItem(c, 3)) == 0);
        CHECK(json_kinds_is_integer(k, cJSON_GetArrayItem(c, 4)) == 0);
        CHECK(json_kinds_is_integer(k, cJSON_GetObjectItem(d, "x\"y")) == 1);
        CHECK(json_kinds_underflowed(k, cJSON_GetObjectItem(root, "e")) == 1);
        CHECK(json_kinds_underflowed(k, cJSON_GetObjectItem(root, "a")) == 0);
        CHECK(json_kinds_underflowed(k, cJSON_GetArrayItem(c, 1)) == 0);
    }
    json_kinds_free(k);
    cJSON_Delete(root);
}

static void test_kinds_mismatch_and_fallback(void)
{
    const char *text = "[1, 2.0]";
    const char *other = "[1, 2.0, 3]";
    cJSON *root = cJSON_Parse(text);
    cJSON *built;

    CHECK(root != NULL);
    if (!root)
        return;
    /* A tree from other text: the counts differ, so no table. */
    CHECK(json_kinds_scan(other, strlen(other), root) == NULL);

    /* Text after the first value is ignored, as cJSON_Parse ignores it. */
    const char *trailing = "[1, 2.0] 7 8";
    json_kinds *k = json_kinds_scan(trailing, strlen(trailing), root);
    CHECK(k != NULL);
    json_kinds_free(k);

    /* Nodes without a literal fall back to "integral means integer". */
    built = cJSON_CreateNumber(3.0);
    CHECK(json_kinds_is_integer(NULL, built) == 1);
    cJSON_SetNumberValue(built, 3.5);
    CHECK(json_kinds_is_integer(NULL, built) == 0);
    cJSON_Delete(built);
    cJSON_Delete(root);

    /* A top-level scalar. */
    root = cJSON_Parse("4.0");
    k = root ? json_kinds_scan("4.0", 3, root) : NULL;
    CHECK(k != NULL);
    CHECK(json_kinds_is_integer(k, root) == 0);
    json_kinds_free(k);
    cJSON_Delete(root);
}

/* Prints text through json_kinds_print and checks the result. */
static void check_print(const char *text, const char *expected)
{
    cJSON *root = cJSON_Parse(text);
    json_kinds *k = root ? json_kinds_scan(text, strlen(text), root) : NULL;
    char *printed = k ? json_kinds_print(root, k) : NULL;

    CHECK_STR(printed, expected);

    /* Round trip: re-scanning the printed text gives the same kinds and
     * values, node for node. */
    if (printed) {
        cJSON *again = cJSON_Parse(printed);
        json_kinds *k2 = again ? json_kinds_scan(printed, strlen(printed), again) : NULL;
        char *printed2 = k2 ? json_kinds_print(again, k2) : NULL;
        CHECK_STR(printed2, printed);
        cJSON_free(printed2);
        json_kinds_free(k2);
        cJSON_Delete(again);
    }
    cJSON_free(printed);
    json_kinds_free(k);
    cJSON_Delete(root);
}

static void test_print_round_trip(void)
{
    check_print("{ \"a\" : 0, \"b\" : 0.0 }", "{\"a\":0,\"b\":0.0}");
    check_print("[1.0, 1, -0, -0.0, 1e3, 0.1, 1e300, 2.5e-7]",
                "[1.0,1,-0,-0.0,1000.0,0.1,1e+300,2.5e-07]");
    check_print("[12345678901234567890]", "[12345678901234567168]");
    check_print("{\"s\":\"3.0 \\\" \\u00e9\",\"n\":[null,true,false,{}]}",
                "{\"s\":\"3.0 \\\" \xc3\xa9\",\"n\":[null,true,false,{}]}");
    check_print("0.30000000000000004", "0.30000000000000004");
    check_print("7", "7");
    /* Non-finite numbers print as null, as cJSON prints them. */
    check_print("[1e400]", "[null]");
}

/* A raw NUL byte inside a string: cJSON (1.7.15) parses the line and cuts the
 * string at the NUL, and the scan must stay paired with its nodes, so the
 * float bound after it is still a float. */
static void test_kinds_nul_in_string(void)
{
    static const char text[] = "{\"s\":\"x\0y\",\"min\":0.0,\"max\":1}";
    size_t len = sizeof(text) - 1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    json_kinds *k;

    CHECK(root != NULL);
    if (root == NULL)
        return;
    k = json_kinds_scan(text, len, root);
    CHECK(k != NULL);
    if (k != NULL) {
        CHECK(json_kinds_is_integer(k, cJSON_GetObjectItem(root, "min")) == 0);
        CHECK(json_kinds_is_integer(k, cJSON_GetObjectItem(root, "max")) == 1);
    }
    json_kinds_free(k);
    cJSON_Delete(root);
}

int main(void)
{
    test_kinds_basic();
    test_kinds_mismatch_and_fallback();
    test_print_round_trip();
    test_kinds_nul_in_string();
    return check_report("test_json_kinds");
}
