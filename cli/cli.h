/* sweepctl internals: the command-line client of sweepd.
 *
 * main.c parses the global options and dispatches through a table of
 * subcommands. conn.c finds the daemon and carries request/reply pairs over
 * the newline-delimited JSON protocol (docs/PROTOCOL.md). format.c renders
 * tables and numbers. The cmd_*.c, watch.c and export.c files contain the
 * subcommands. Every handler returns one of the exit codes below, which
 * docs/CLI.md lists for users.
 */
#ifndef SWEEPD_CLI_H
#define SWEEPD_CLI_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "linebuf.h"

/* Exit codes of sweepctl; docs/CLI.md documents them. */
enum cli_exit {
    CLI_EXIT_OK = 0,       /* the request succeeded */
    CLI_EXIT_DAEMON = 1,   /* the daemon replied with an error */
    CLI_EXIT_USAGE = 2,    /* bad options or arguments */
    CLI_EXIT_CONNECT = 3,  /* no daemon listening, or the connection failed */
    CLI_EXIT_SPEC = 4,     /* the spec file is unreadable or invalid */
    CLI_EXIT_PROTOCOL = 5, /* the daemon closed the connection or sent a malformed reply */
};

/* Longest reply line accepted from the daemon. Replies are larger than
 * requests (a trials listing of a big sweep), but a reader of network input
 * still needs a ceiling. */
#define CLI_MAX_REPLY_BYTES ((size_t)256 * 1024 * 1024)

/* Seconds to wait for a reply before giving up. */
#define CLI_REPLY_TIMEOUT_S 120

/* Options that every subcommand accepts, before or after its name. */
typedef struct cli_ctx {
    const char *prog;       /* argv[0] for messages, "sweepctl" */
    const char *connect;    /* --connect value, NULL when not given */
    const char *token_file; /* --token-file value, NULL when not given */
    int json;               /* --json: print replies as JSON for scripts */
} cli_ctx;

/* One row of the subcommand table. */
typedef struct cli_command {
    const char *name;
    const char *usage;   /* arguments after the name, e.g. "SWEEP [--state S]" */
    const char *summary; /* one line for the command list */
    const char *help;    /* option descriptions, one per line, or NULL */
    int (*run)(cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv);
} cli_command;

/* ---- options.c: option helpers shared by the subcommands ---- */

/* Help text of the global options and the exit codes. */
extern const char cli_global_help[];

/* Long-option ids of the global options, kept above any short-option char. */
enum { CLI_OPT_CONNECT = 1000, CLI_OPT_TOKEN_FILE, CLI_OPT_JSON, CLI_OPT_HELP };

/* Spreads the global options into a subcommand's struct option array. */
#define CLI_GLOBAL_LONG_OPTIONS                                   \
    {"connect", required_argument, NULL, CLI_OPT_CONNECT},         \
    {"token-file", required_argument, NULL, CLI_OPT_TOKEN_FILE},   \
    {"json", no_argument, NULL, CLI_OPT_JSON},                     \
    {"help", no_argument, NULL, CLI_OPT_HELP}

/* One option of a subcommand: a flag (--generic), an option with a value
 * (--limit N) or a repeatable one (--where A=B --where C=D). Exactly one of
 * value, flag and list is set. */
typedef struct cli_opt {
    const char *name;   /* long name without the dashes; NULL ends a list */
    const char **value; /* receives the value of --name VALUE */
    int *flag;          /* set to 1 by --name */
    const char **list;  /* receives each value of a repeated --name VALUE */
    int *list_count;    /* number of values stored in list */
    int list_max;       /* capacity of list; one more value is a usage error */
} cli_opt;

#define CLI_MAX_OPTS 16
#define CLI_OPT_OWN 2000

/* Parses a subcommand's argv (argv[0] is its name): the global options, the
 * options in opts (NULL-name terminated) and between min_pos and max_pos
 * positional arguments, stored in positional[*npos]. Then checks the global
 * options for conflicts. Returns 0; -1 after printing help for --help (the
 * caller exits 0); or CLI_EXIT_USAGE after a one-line error. */
int cli_parse_args(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv,
                   const cli_opt *opts, const char **positional, int min_pos, int max_pos,
                   int *npos);

/* Applies a global option returned by getopt_long. Returns 1 when c was a
 * global option, 0 when it was not, and -1 for --help, after printing cmd's
 * help when cmd is not NULL (the caller then exits 0). */
int cli_global_option(cli_ctx *ctx, const cli_command *cmd, int c, const char *arg);

/* Prints a one-line usage error for cmd to stderr and returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints cmd's usage and option help to out. */
void cli_print_command_help(const cli_command *cmd, FILE *out);

/* Parses a sweep id argument (a positive integer). Returns 0 and sets *sweep,
 * or prints a usage error and returns CLI_EXIT_USAGE. */
int cli_parse_sweep(const cli_command *cmd, const char *text, long long *sweep);

/* Parses a non-negative integer option value. Same returns as above. */
int cli_parse_count(const cli_command *cmd, const char *name, const char *text, long long *out);

/* Checks the global options against each other (for example --token-file
 * with a unix socket). Returns 0 or prints a usage error and returns
 * CLI_EXIT_USAGE. */
int cli_check_global_conflicts(const cli_ctx *ctx, const cli_command *cmd);

/* ---- conn.c: finding the daemon and talking to it ---- */

/* Where the daemon listens. */
typedef struct cli_address {
    int is_tcp;
    char path[128];   /* unix socket path when !is_tcp (sun_path has 108 bytes) */
    char host[256];   /* TCP host when is_tcp */
    char port[16];    /* TCP port when is_tcp */
    char display[300]; /* "unix:/path" or "tcp:host:port", for messages */
    const char *from; /* "--connect", "$SWEEPD_SOCKET" or "the default socket" */
} cli_address;

/* A blocking connection that carries one request at a time. */
typedef struct cli_conn {
    int fd;
    linebuf lb;
    long long next_id;
    cli_address addr;
} cli_conn;

/* Resolves the daemon address from --connect, $SWEEPD_SOCKET or the default
 * socket in the state directory. Returns 0, or prints why and returns
 * CLI_EXIT_USAGE. */
int cli_address_resolve(const cli_ctx *ctx, cli_address *addr);

/* Connects to the daemon and, on TCP, presents the token with a hello.
 * Returns 0, or prints the address tried and how to start the daemon and
 * returns CLI_EXIT_CONNECT (CLI_EXIT_DAEMON when the hello is rejected). */
int cli_conn_open(const cli_ctx *ctx, cli_conn *conn);

/* Sends {"id":N,"op":op[,members]} where members is a JSON text fragment of
 * object members ("\"sweep\":3") spliced in verbatim, or NULL. Waits for the
 * reply with the same id, skipping events. Returns 0 and sets *reply (owned
 * by the caller) when the daemon replied ok. Otherwise prints the failure
 * and returns an exit code. An error reply gives CLI_EXIT_DAEMON, or
 * CLI_EXIT_SPEC for invalid_spec. A connection failure gives
 * CLI_EXIT_CONNECT, a malformed or missing reply CLI_EXIT_PROTOCOL.
 * With error_out non-NULL an error reply is not printed; its "error" object
 * is detached into *error_out instead (owned by the caller). */
int cli_conn_call(cli_conn *conn, const char *op, const char *members, cJSON **reply,
                  cJSON **error_out);

/* Sends one line (a newline is appended). Returns 0 or an exit code. */
int cli_conn_send_line(cli_conn *conn, const char *text, size_t len);

/* Closes the socket and frees the buffer. Safe on a closed connection. */
void cli_conn_close(cli_conn *conn);

/* Prints a daemon error object ({"code","message"}) to stderr and returns the
 * exit code it maps to. */
int cli_report_daemon_error(const char *op, const cJSON *error);

/* Opens a connection, makes one call and closes it. Same returns as
 * cli_conn_call with error_out NULL. */
int cli_call_once(const cli_ctx *ctx, const char *op, const char *members, cJSON **reply);

/* Prints reply to stdout as pretty JSON, without its "id" and "ok" members.
 * Returns 0 or CLI_EXIT_PROTOCOL when printing failed. */
int cli_print_json(cJSON *reply);

/* ---- format.c: numbers and tables ---- */

/* Formats a loss value: a finite number with 4 decimals, the strings "nan",
 * "inf" and "-inf" as they are, and "-" for null or a missing value. */
const char *cli_fmt_loss(const cJSON *v, char *buf, size_t size);

/* Formats any scalar JSON value for a table cell or CSV field: numbers in the
 * shortest form that reads back to the same double, strings as they are,
 * booleans as true/false, null and missing as "" (empty_as) . */
const char *cli_fmt_scalar(const cJSON *v, const char *empty_as, char *buf, size_t size);

/* Reads a number member that may be a JSON number, or the string "nan",
 * "inf" or "-inf". Returns 1 and sets *out, or 0 when absent or null. */
int cli_get_double(const cJSON *obj, const char *name, double *out);

/* Reads an integer member. Returns 1 and sets *out, or 0 when absent. */
int cli_get_ll(const cJSON *obj, const char *name, long long *out);

/* Returns the string member name, or fallback when absent or not a string. */
const char *cli_get_str(const cJSON *obj, const char *name, const char *fallback);

/* Formats seconds as "1h02m", "3m07s" or "42s". */
const char *cli_fmt_duration(double seconds, char *buf, size_t size);

/* Formats a percentage of a fraction in [0, 1] with two decimals, or "-" when
 * the member is absent. */
const char *cli_fmt_percent(const cJSON *obj, const char *name, char *buf, size_t size);

/* A text table: headers, rows of owned strings, columns padded to the widest
 * cell. Columns past CLI_TABLE_MAX_COLS are dropped. */
#define CLI_TABLE_MAX_COLS 32
typedef struct cli_table {
    int ncols;
    const char *const *headers;
    const unsigned char *right; /* per column: 1 = right-aligned, or NULL */
    char **cells;               /* nrows * ncols owned strings */
    size_t nrows;
    size_t cap_rows;
    int out_of_memory; /* a row could not be added */
} cli_table;

void cli_table_init(cli_table *t, int ncols, const char *const *headers,
                    const unsigned char *right);
/* Appends a row of ncols strings (copied). Returns 0, or -1 and marks the
 * table when out of memory. */
int cli_table_add(cli_table *t, const char *const *cells);
/* Prints the table, or empty_message (when not NULL) if it has no rows, then
 * frees it. Returns CLI_EXIT_PROTOCOL after an out-of-memory row, else 0. */
int cli_table_finish(cli_table *t, const char *empty_message, FILE *out);
void cli_table_print(const cli_table *t, FILE *out);
void cli_table_free(cli_table *t);

/* Appends the parameters of params as "name=value" pairs joined by spaces,
 * nested objects flattened with dots, into buf. */
const char *cli_fmt_params(const cJSON *params, char *buf, size_t size);

/* ---- subcommand handlers (cmd_spec.c, cmd_query.c, cmd_tickets.c,
 *      watch.c, export.c) ---- */
int cli_cmd_submit(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_validate(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_list(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_status(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_trials(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_workers(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_control(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_tickets(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_watch(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);
int cli_cmd_export(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv);

/* Prints the progress bar "[#####.....]" of width cells for done/total. */
void cli_fmt_bar(long long done, long long total, int width, char *buf, size_t size);

/* Fills table with one row per worker of a workers reply (cmd_query.c; used
 * by workers and watch). Returns 0, or -1 when out of memory; the caller
 * frees the table either way. */
int cli_workers_table(const cJSON *workers, cli_table *table);

/* Prints one sweep's status block (cmd_query.c; used by status). */
void cli_print_status(const cJSON *status, FILE *out);

#endif
