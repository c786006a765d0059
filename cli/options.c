/* Option helpers shared by the sweepctl subcommands: the global options,
 * usage errors in one line, per-command help and argument parsing. The
 * subcommand table itself lives in main.c.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char cli_global_help[] =
    "Global options (before or after the subcommand):\n"
    "  --connect ADDR     daemon address: unix:PATH or tcp:HOST:PORT (default:\n"
    "                     $SWEEPD_SOCKET, else $XDG_STATE_HOME/sweepd/sweepd.sock,\n"
    "                     else ~/.local/state/sweepd/sweepd.sock)\n"
    "  --token-file FILE  file with the token that a TCP connection presents\n"
    "  --json             print the daemon's reply as JSON, for scripts\n"
    "  --help             print help; after a subcommand, that subcommand's help\n"
    "\n"
    "Exit codes: 0 ok, 1 the daemon returned an error, 2 usage error, 3 cannot\n"
    "connect, 4 invalid or unreadable spec file, 5 malformed or missing reply.\n";

void cli_print_command_help(const cli_command *cmd, FILE *out)
{
    fprintf(out, "usage: sweepctl %s%s%s\n\n%s.\n", cmd->name, cmd->usage[0] != '\0' ? " " : "",
            cmd->usage, cmd->summary);
    if (cmd->help != NULL)
        fprintf(out, "\nOptions:\n%s", cmd->help);
    fprintf(out, "\n%s", cli_global_help);
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sweepctl%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd != NULL)
        fprintf(stderr, " (usage: sweepctl %s%s%s)\n", cmd->name, cmd->usage[0] ? " " : "",
                cmd->usage);
    else
        fprintf(stderr, " (run 'sweepctl --help')\n");
    return CLI_EXIT_USAGE;
}

int cli_global_option(cli_ctx *ctx, const cli_command *cmd, int c, const char *arg)
{
    switch (c) {
    case CLI_OPT_CONNECT:
        ctx->connect = arg;
        return 1;
    case CLI_OPT_TOKEN_FILE:
        ctx->token_file = arg;
        return 1;
    case CLI_OPT_JSON:
        ctx->json = 1;
        return 1;
    case CLI_OPT_HELP:
        if (cmd != NULL)
            cli_print_command_help(cmd, stdout);
        return -1;
    default:
        return 0;
    }
}

int cli_check_global_conflicts(const cli_ctx *ctx, const cli_command *cmd)
{
    if (ctx->token_file != NULL && ctx->connect != NULL &&
        strncmp(ctx->connect, "tcp:", 4) != 0)
        return cli_usage_error(cmd, "--token-file applies only to --connect tcp:HOST:PORT, "
                                    "not to '%s'", ctx->connect);
    return 0;
}

int cli_parse_count(const cli_command *cmd, const char *name, const char *text, long long *out)
{
    char *end;

    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0)
        return cli_usage_error(cmd, "invalid %s '%s': expected a non-negative integer", name,
                               text);
    *out = v;
    return 0;
}

int cli_parse_sweep(const cli_command *cmd, const char *text, long long *sweep)
{
    char *end;

    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0)
        return cli_usage_error(cmd, "invalid sweep id '%s': expected a positive integer as "
                                    "printed by 'sweepctl list'", text);
    *sweep = v;
    return 0;
}


int cli_parse_args(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv,
                   const cli_opt *opts, const char **positional, int min_pos, int max_pos,
                   int *npos)
{
    static const struct option globals[] = {CLI_GLOBAL_LONG_OPTIONS};
    struct option longopts[CLI_MAX_OPTS + 5];
    int nglobal = (int)(sizeof(globals) / sizeof(globals[0]));
    int nopts = 0;
    int c;

    /* The long-option table: the global options, then the command's own,
     * whose getopt ids are CLI_OPT_OWN + index. */
    memcpy(longopts, globals, sizeof(globals));
    for (; opts != NULL && opts[nopts].name != NULL && nopts < CLI_MAX_OPTS; nopts++) {
        longopts[nglobal + nopts] = (struct option){
            opts[nopts].name, opts[nopts].flag ? no_argument : required_argument, NULL,
            CLI_OPT_OWN + nopts};
    }
    longopts[nglobal + nopts] = (struct option){0, 0, 0, 0};

    *npos = 0;
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == ':')
            return cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        if (c == '?')
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        int global = cli_global_option(ctx, cmd, c, optarg);
        if (global < 0)
            return -1;
        if (global > 0)
            continue;
        const cli_opt *o = &opts[c - CLI_OPT_OWN];
        if (o->value != NULL) {
            *o->value = optarg;
        } else if (o->list != NULL) {
            if (*o->list_count >= o->list_max)
                return cli_usage_error(cmd, "--%s is given more than %d times", o->name, o->list_max);
            o->list[(*o->list_count)++] = optarg;
        } else {
            *o->flag = 1;
        }
    }

    int rc = cli_check_global_conflicts(ctx, cmd);
    if (rc != 0)
        return rc;
    for (int i = optind; i < argc; i++) {
        if (*npos >= max_pos)
            return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        positional[(*npos)++] = argv[i];
    }
    if (*npos < min_pos)
        return cli_usage_error(cmd, "missing argument");
    return 0;
}
