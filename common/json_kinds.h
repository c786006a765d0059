/* The kind of each JSON number literal: integer (written without '.', 'e' or
 * 'E', such as 0) or float (0.0, 1e3). cJSON stores every number as a double
 * and forgets how it was written, yet sweep specs give 0 and 0.0 different
 * meanings. json_kinds_scan() reads the raw text in document order and pairs
 * the n-th number literal with the n-th number node of a pre-order traversal
 * of the cJSON tree parsed from that text, because cJSON keeps document order.
 */
#ifndef SWEEPD_JSON_KINDS_H
#define SWEEPD_JSON_KINDS_H

#include <stddef.h>

#include <cJSON.h>

typedef struct json_kinds json_kinds;

/* Scans the first JSON value in text[0..len) and pairs its number literals
 * with the number nodes of root, which must be the tree cJSON parsed from the
 * same text. Returns a table the caller frees with json_kinds_free(), or NULL
 * when the literal count differs from the node count (root came from other
 * text) or on ENOMEM. */
json_kinds *json_kinds_scan(const char *text, size_t len, const cJSON *root);

/* Returns 1 when number was written without '.', 'e' or 'E', else 0. A node
 * that is not in the table (k NULL, or a node built later) counts as integer
 * when its value is integral and |value| <= 2^53. */
int json_kinds_is_integer(const json_kinds *k, const cJSON *number);

/* Returns 1 when the literal of number has a nonzero digit but cJSON parsed it
 * to 0 (1e-400 underflows), else 0. Lets callers name the cause of a zero. */
int json_kinds_underflowed(const json_kinds *k, const cJSON *number);

void json_kinds_free(json_kinds *k);

/* Prints node as compact JSON where integer-valued floats keep a float form
 * ("1.0"), so re-scanning the text gives the same kinds. Floats print with the
 * fewest digits that parse back to the same double; non-finite numbers print
 * as null (cJSON's rule). Returns text the caller frees with cJSON_free, or
 * NULL on ENOMEM. */
char *json_kinds_print(const cJSON *node, const json_kinds *k);

#endif
