/* sweepctl submit and validate: send a sweep spec file to the daemon.
 *
 * The daemon distinguishes an integer literal from a float one ({"min": 0} is an
 * int_uniform bound, {"min": 0.0} a uniform one), and cJSON keeps no record
 * of the difference. So the file's text is spliced verbatim into the request
 * line, with its line breaks turned into spaces, after checking here that it
 * is one JSON object that fits the daemon's line limit. No number is ever
 * reprinted.
 */
#include "cli.h"
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of the request line around the spec text: {"id":N,"op":"validate",
 * "generic":false,"show":N,"spec":...}. */
#define REQUEST_OVERHEAD_BYTES 128

/* The maximum "show" that sweepd accepts in a validate request. */
#define VALIDATE_MAX_SHOW 1000

/* Reads the spec file into a NUL-terminated buffer of at most max_bytes.
 * Returns the buffer (owned by the caller) or NULL after printing why. */
static char *read_spec_file(const char *path, size_t max_bytes, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "sweepctl: cannot open spec file '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(max_bytes + 2);
    if (text == NULL) {
        fclose(f);
        fprintf(stderr, "sweepctl: out of memory reading '%s'\n", path);
        return NULL;
    }
    size_t n = fread(text, 1, max_bytes + 1, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        fprintf(stderr, "sweepctl: cannot read spec file '%s'\n", path);
        free(text);
        return NULL;
    }
    if (n > max_bytes) {
        fprintf(stderr, "sweepctl: spec file '%s' is larger than %zu bytes, the most that "
                        "fits in one request line; shorten it\n", path, max_bytes);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

/* Prints where cJSON stopped parsing as "line L, column C". */
static void print_parse_error(const char *path, const char *text, const char *stop)
{
    int line = 1, column = 1;
    for (const char *p = text; stop != NULL && p < stop && *p != '\0'; p++) {
        if (*p == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    fprintf(stderr, "sweepctl: spec file '%s' is not valid JSON: parsing stopped at line %d, "
                    "column %d\n", path, line, column);
}

/* Loads a spec file as one line of JSON text ready to splice into a request.
 * Returns the text (owned by the caller) or NULL after printing why. */
static char *load_spec(const char *path)
{
    size_t len;
    size_t max_bytes = PROTO_MAX_LINE_BYTES - REQUEST_OVERHEAD_BYTES;
    char *text = read_spec_file(path, max_bytes, &len);
    if (text == NULL)
        return NULL;

    if (strlen(text) != len) {
        fprintf(stderr, "sweepctl: spec file '%s' contains a NUL byte; it must be UTF-8 "
                        "JSON text\n", path);
        free(text);
        return NULL;
    }
    /* A UTF-8 byte order mark is not JSON; drop it. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        memmove(text, text + 3, len - 2);

    const char *stop = NULL;
    cJSON *spec = cJSON_ParseWithOpts(text, &stop, 1);
    if (spec == NULL) {
        print_parse_error(path, text, stop ? stop : cJSON_GetErrorPtr());
        free(text);
        return NULL;
    }
    int is_object = cJSON_IsObject(spec);
    cJSON_Delete(spec);
    if (!is_object) {
        fprintf(stderr, "sweepctl: spec file '%s' must hold one JSON object ({...})\n", path);
        free(text);
        return NULL;
    }

    /* JSON strings cannot hold raw line breaks, so every CR or LF sits
     * between tokens, where a space means the same. */
    for (char *p = text; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return text;
}

/* Builds the request members: before (a members fragment, may be "") then
 * "spec": and the spec file's text. Returns the string (owned by the caller)
 * or NULL after printing why, with *rc set to the exit code. */
static char *spec_members(const char *path, const char *before, int *rc)
{
    char *spec = load_spec(path);
    if (spec == NULL) {
        *rc = CLI_EXIT_SPEC;
        return NULL;
    }
    size_t size = strlen(before) + strlen(spec) + 16;
    char *members = malloc(size);
    if (members == NULL) {
        fprintf(stderr, "sweepctl: out of memory\n");
        *rc = CLI_EXIT_PROTOCOL;
    } else {
        snprintf(members, size, "%s%s\"spec\":%s", before, before[0] ? "," : "", spec);
    }
    free(spec);
    return members;
}

/* Prints the command that starts a worker for the daemon at addr. */
/* Prints the reply's "warnings" to stderr, one line each. */
static void print_warnings(const cJSON *reply)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(reply, "warnings"))
    {
        if (cJSON_IsString(item))
            fprintf(stderr, "sweepctl: warning: %s\n", item->valuestring);
    }
}

static void print_worker_hint(const cli_ctx *ctx, const cli_address *addr)
{
    printf("start a worker with:\n  sweep-worker --connect %s", addr->display);
    if (addr->is_tcp && ctx->token_file != NULL)
        printf(" --token-file %s", ctx->token_file);
    printf("\n");
}

int cli_cmd_submit(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = cli_parse_args(ctx, cmd, argc, argv, NULL, pos, 1, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;

    char *members = spec_members(pos[0], "", &rc);
    if (members == NULL)
        return rc;

    cli_conn conn;
    cJSON *reply = NULL;
    rc = cli_conn_open(ctx, &conn);
    if (rc == 0)
        rc = cli_conn_call(&conn, "submit", members, &reply, NULL);
    free(members);
    if (rc != 0) {
        cli_conn_close(&conn);
        return rc;
    }

    print_warnings(reply);
    if (ctx->json) {
        rc = cli_print_json(reply);
    } else {
        long long sweep = 0, trials = 0;
        char count[64];
        cli_get_ll(reply, "sweep", &sweep);
        if (cli_get_ll(reply, "size", &trials))
            snprintf(count, sizeof(count), "%lld trials", trials);
        else
            snprintf(count, sizeof(count), "unbounded (no run_cap)");
        printf("submitted sweep %lld \"%s\": %s, method %s", sweep,
               cli_get_str(reply, "name", ""), count, cli_get_str(reply, "method", "?"));

        /* A random spec without a seed gets a drawn one, and adding it to the
         * spec is how a user repeats the same trials. A grid draws nothing. */
        long long seed = 0;
        if (strcmp(cli_get_str(reply, "method", ""), "random") == 0 &&
            cli_get_ll(reply, "seed", &seed))
            printf(", seed %lld", seed);
        printf("\n");
        print_worker_hint(ctx, &conn.addr);
        printf("follow it with:\n  sweepctl watch %lld\n", sweep);
    }
    cJSON_Delete(reply);
    cli_conn_close(&conn);
    return rc;
}

int cli_cmd_validate(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *show_text = NULL;
    int generic = 0;
    const cli_opt opts[] = {
        {"generic", NULL, &generic, NULL, NULL, 0},
        {"show", &show_text, NULL, NULL, NULL, 0},
        {NULL, NULL, NULL, NULL, NULL, 0},
    };
    const char *pos[1];
    int npos;
    long long show = 5;

    int rc = cli_parse_args(ctx, cmd, argc, argv, opts, pos, 1, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (show_text != NULL && (rc = cli_parse_count(cmd, "--show", show_text, &show)) != 0)
        return rc;
    if (show > VALIDATE_MAX_SHOW)
        return cli_usage_error(cmd, "--show %lld is too large; the maximum is %d", show,
                               VALIDATE_MAX_SHOW);

    char before[64];
    snprintf(before, sizeof(before), "\"generic\":%s,\"show\":%lld",
             generic ? "true" : "false", show);
    char *members = spec_members(pos[0], before, &rc);
    if (members == NULL)
        return rc;

    cJSON *reply = NULL;
    rc = cli_call_once(ctx, "validate", members, &reply);
    free(members);
    if (rc != 0)
        return rc;
    print_warnings(reply);
    if (ctx->json) {
        rc = cli_print_json(reply);
        cJSON_Delete(reply);
        return rc;
    }

    long long trials;
    if (cli_get_ll(reply, "size", &trials))
        printf("%s: valid, %lld trials\n", pos[0], trials);
    else
        printf("%s: valid, unbounded (random search without run_cap)\n", pos[0]);

    /* Each element is a params object, or {"index", "params"}. */
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, "trials");
    if (cJSON_IsArray(list) && cJSON_GetArraySize(list) > 0) {
        static const char *const headers[] = {"index", "parameters"};
        static const unsigned char right[] = {1, 0};
        cli_table table;
        const cJSON *item;
        long long index = 0;
        char index_text[32];
        char params[4096];

        cli_table_init(&table, 2, headers, right);
        cJSON_ArrayForEach(item, list) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(item, "params");
            long long i = index;
            if (cJSON_IsObject(p))
                cli_get_ll(item, "index", &i);
            else
                p = item;
            snprintf(index_text, sizeof(index_text), "%lld", i);
            const char *cells[] = {index_text, cli_fmt_params(p, params, sizeof(params))};
            cli_table_add(&table, cells);
            index++;
        }
        rc = cli_table_finish(&table, NULL, stdout);
    }
    cJSON_Delete(reply);
    return rc;
}
