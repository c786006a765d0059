/* Number-literal kinds for cJSON trees: a scan of the raw JSON text records,
 * for each number literal in document order, whether it was written as an
 * integer, and pairs it with the number nodes of the parsed tree. The scan
 * only tokenises enough JSON to skip strings and find the end of the first
 * value, because cJSON has already checked that the text is valid JSON.
 */
#include "json_kinds.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    KIND_INTEGER = 1,       /* no '.', 'e' or 'E' in the literal */
    KIND_NONZERO_DIGIT = 2, /* the mantissa has a digit 1-9 */
};

struct kind_entry {
    const cJSON *node;
    unsigned char flags;
};

struct json_kinds {
    struct kind_entry *entries; /* sorted by node address for bsearch */
    size_t count;
};

/* A growable array of literal flags in document order. */
struct flag_list {
    unsigned char *flags;
    size_t count, cap;
};

static int flag_list_push(struct flag_list *list, unsigned char flags)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        unsigned char *grown = realloc(list->flags, cap);
        if (!grown)
            return -1;
        list->flags = grown;
        list->cap = cap;
    }
    list->flags[list->count++] = flags;
    return 0;
}

/* Reads the number literal at text[*pos] and advances past it. The accepted
 * characters are the ones cJSON copies into its strtod buffer. */
static unsigned char scan_number(const char *text, size_t len, size_t *pos)
{
    unsigned char flags = KIND_INTEGER;
    int in_exponent = 0;
    size_t i = *pos;

    for (; i < len && strchr("0123456789+-.eE", text[i]) && text[i] != '\0'; i++) {
        char c = text[i];
        if (c == '.')
            flags &= (unsigned char)~KIND_INTEGER;
        else if (c == 'e' || c == 'E') {
            flags &= (unsigned char)~KIND_INTEGER;
            in_exponent = 1;
        } else if (c >= '1' && c <= '9' && !in_exponent)
            flags |= KIND_NONZERO_DIGIT;
    }
    *pos = i;
    return flags;
}

/* Records the flags of every number literal of the first JSON value in text.
 * Returns 0, or -1 on ENOMEM. */
static int scan_literals(const char *text, size_t len, struct flag_list *list)
{
    size_t pos = 0;
    size_t depth = 0;

    while (pos < len && text[pos] != '\0') {
        char c = text[pos];
        int value_ended = 0;

        if (c == '"') {
            /* Skip the string; a backslash escapes the next byte. A NUL
             * byte does not end it, because cJSON keeps reading to the
             * closing quote when it is given a length. */
            pos++;
            while (pos < len && text[pos] != '"')
                pos += text[pos] == '\\' ? 2 : 1;
            pos++;
            value_ended = 1;
        } else if (c == '{' || c == '[') {
            depth++;
            pos++;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
            pos++;
            value_ended = 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (flag_list_push(list, scan_number(text, len, &pos)) != 0)
                return -1;
            value_ended = 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            while (pos < len && ((text[pos] >= 'a' && text[pos] <= 'z') ||
                                 (text[pos] >= 'A' && text[pos] <= 'Z')))
                pos++;
            value_ended = 1;
        } else {
            pos++; /* whitespace, ':' or ',' */
        }

        /* Text after the first complete value is not part of the tree. */
        if (value_ended && depth == 0)
            break;
    }
    return 0;
}

/* Appends root and every number node under it, in pre-order, to
 * nodes[*count...]; nodes == NULL only counts. cJSON bounds the nesting at
 * CJSON_NESTING_LIMIT, which bounds this recursion. */
static void collect_tree(const cJSON *root, const cJSON **nodes, size_t *count)
{
    if (cJSON_IsNumber(root)) {
        if (nodes)
            nodes[*count] = root;
        (*count)++;
    }
    for (const cJSON *child = root->child; child; child = child->next)
        collect_tree(child, nodes, count);
}

static int compare_entries(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct kind_entry *)a)->node;
    uintptr_t y = (uintptr_t)((const struct kind_entry *)b)->node;
    return x < y ? -1 : x > y;
}

json_kinds *json_kinds_scan(const char *text, size_t len, const cJSON *root)
{
    struct flag_list list = { 0 };
    const cJSON **nodes = NULL;
    json_kinds *k = NULL;
    size_t count = 0;

    if (!text || !root)
        return NULL;
    if (scan_literals(text, len, &list) != 0)
        goto fail;

    /* The literal count must equal the node count, else root is not the tree
     * of this text and the pairing would be wrong. */
    collect_tree(root, NULL, &count);
    if (count != list.count)
        goto fail;

    k = calloc(1, sizeof(*k));
    nodes = calloc(count ? count : 1, sizeof(*nodes));
    if (!k || !nodes)
        goto fail;
    k->entries = calloc(count ? count : 1, sizeof(*k->entries));
    if (!k->entries)
        goto fail;

    count = 0;
    collect_tree(root, nodes, &count);
    for (size_t i = 0; i < count; i++) {
        k->entries[i].node = nodes[i];
        k->entries[i].flags = list.flags[i];
    }
    k->count = count;
    qsort(k->entries, count, sizeof(*k->entries), compare_entries);

    free(nodes);
    free(list.flags);
    return k;

fail:
    free(nodes);
    free(list.flags);
    json_kinds_free(k);
    return NULL;
}

void json_kinds_free(json_kinds *k)
{
    if (!k)
        return;
    free(k->entries);
    free(k);
}

static const struct kind_entry *find_entry(const json_kinds *k, const cJSON *number)
{
    struct kind_entry key = { number, 0 };
    if (!k || k->count == 0)
        return NULL;
    return bsearch(&key, k->entries, k->count, sizeof(*k->entries), compare_entries);
}

int json_kinds_is_integer(const json_kinds *k, const cJSON *number)
{
    const struct kind_entry *entry = find_entry(k, number);
    double v;

    if (entry)
        return (entry->flags & KIND_INTEGER) != 0;

    /* A node without a literal: integral values within 2^53 count as
     * integers, because only those are exact in a double. */
    if (!cJSON_IsNumber(number))
        return 0;
    v = number->valuedouble;
    return isfinite(v) && v == floor(v) && fabs(v) <= 9007199254740992.0;
}

int json_kinds_underflowed(const json_kinds *k, const cJSON *number)
{
    const struct kind_entry *entry = find_entry(k, number);
    return entry && (entry->flags & KIND_NONZERO_DIGIT) && number->valuedouble == 0.0;
}

/* Formats a finite double with the fewest significant digits (15 to 17) that
 * parse back to the same value. */
static void format_shortest(double v, char *out, size_t out_size)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, out_size, "%.*g", digits, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* Formats the number node number as its kind requires. */
static void format_number(const cJSON *number, int is_integer, char *out, size_t out_size)
{
    double v = number->valuedouble;

    if (!isfinite(v)) {
        snprintf(out, out_size, "null");
        return;
    }
    if (is_integer) {
        /* An integer literal parses to an integral double, printed in full
         * so it stays an integer literal (1e20 would read back as a float). */
        snprintf(out, out_size, "%.0f", v);
        return;
    }
    format_shortest(v, out, out_size);
    if (!strpbrk(out, ".eE"))
        strncat(out, ".0", out_size - strlen(out) - 1);
}

/* Turns number nodes of copy into raw nodes holding the text of the matching
 * node of orig: orig itself and its descendants, which copy mirrors. Returns
 * 0, or -1 on ENOMEM. */
static int rewrite_numbers(const cJSON *orig, cJSON *copy, const json_kinds *k)
{
    /* A double prints in at most ~330 characters with %.0f (DBL_MAX). */
    char text[400];
    const cJSON *orig_child;
    cJSON *copy_child;

    if (cJSON_IsNumber(orig)) {
        cJSON *raw;

        format_number(orig, json_kinds_is_integer(k, orig), text, sizeof(text));
        raw = cJSON_CreateRaw(text);
        if (!raw)
            return -1;
        /* Move raw's string, allocated by cJSON's allocator, into copy so
         * cJSON_Delete(copy) frees it. */
        copy->type = cJSON_Raw | (copy->type & cJSON_StringIsConst);
        copy->valuestring = raw->valuestring;
        raw->valuestring = NULL;
        cJSON_Delete(raw);
        return 0;
    }

    orig_child = orig->child;
    copy_child = copy->child;
    for (; orig_child && copy_child; orig_child = orig_child->next, copy_child = copy_child->next) {
        if (rewrite_numbers(orig_child, copy_child, k) != 0)
            return -1;
    }
    return 0;
}

char *json_kinds_print(const cJSON *node, const json_kinds *k)
{
    cJSON *copy;
    char *text = NULL;

    if (!node)
        return NULL;
    copy = cJSON_Duplicate(node, 1);
    if (!copy)
        return NULL;
    if (rewrite_numbers(node, copy, k) == 0)
        text = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return text;
}
