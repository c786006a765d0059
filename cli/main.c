/* sweepctl: the command-line client of sweepd.
 *
 * Parses the global options, looks the subcommand up in a table (name, usage,
 * help, handler) and runs its handler, whose return value is the exit code.
 * Global options may also follow the subcommand name. docs/CLI.md documents
 * every subcommand with output examples and the exit codes.
 */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const cli_command commands[] = {
    {"submit", "SPEC.json", "submit a sweep spec and print its id and trial count", NULL,
     cli_cmd_submit},
    {"validate", "SPEC.json [--generic] [--show N]",
     "check a sweep spec without storing it and print its first trials",
     "  --generic   skip the check that every parameter is a trainer hyperparameter\n"
     "  --show N    print the parameters of the first N trials (default 5, at most 1000)\n",
     cli_cmd_validate},
    {"list", "", "list all sweeps with their state and progress", NULL, cli_cmd_list},
    {"status", "[SWEEP]", "show trial counts per state, progress and best loss", NULL,
     cli_cmd_status},
    {"trials", "SWEEP [--state S] [--sort KEY] [--limit N] [--offset N] [--where NAME=VALUE]...",
     "list the trials of a sweep",
     "  --state S           only trials in state S (pending, running, completed, diverged,\n"
     "                      failed, cancelled)\n"
     "  --sort KEY          order by id, final_loss, best_loss or seconds (default id)\n"
     "  --limit N           print at most N trials (default 1000, at most 100000)\n"
     "  --offset N          skip the first N trials of that order (default 0)\n"
     "  --where NAME=VALUE  only trials whose parameter NAME equals VALUE (nested\n"
     "                      names with dots: model.d_model); repeat to combine, up\n"
     "                      to 16; true/false and numbers match as such\n",
     cli_cmd_trials},
    {"tickets", "SWEEP [--threshold X] [--by PARAM]",
     "winning-ticket fractions: runs that reach a loss below X",
     "  --threshold X  loss in nats that a winner's final loss must be below\n"
     "                 (default: the sweep's ticket_threshold)\n"
     "  --by PARAM     group by the values of a parameter, e.g. optimizer\n",
     cli_cmd_tickets},
    {"workers", "", "list the connected workers and what they train", NULL, cli_cmd_workers},
    {"watch", "[SWEEP] [--until-done] [--interval S]", "live view of a sweep and its workers",
     "  --until-done   exit when the sweep is finished or cancelled\n"
     "  --interval S   seconds between status lines when stdout is not a terminal\n"
     "                 (default 5)\n",
     cli_cmd_watch},
    {"pause", "SWEEP", "stop leasing new trials of a sweep; running ones finish", NULL,
     cli_cmd_control},
    {"resume", "SWEEP", "lease trials of a paused sweep again", NULL, cli_cmd_control},
    {"cancel", "SWEEP", "cancel a sweep: pending trials are cancelled, running ones stopped",
     NULL, cli_cmd_control},
    {"export", "SWEEP --format csv|json [--output FILE]",
     "write one row per trial: parameters, losses, steps, seconds, worker",
     "  --format F     csv or json\n"
     "  --output FILE  write to FILE instead of stdout\n",
     cli_cmd_export},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_main_help(FILE *out)
{
    fprintf(out, "usage: sweepctl [global options] COMMAND [ARGS]\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n%s\nRun 'sweepctl COMMAND --help' for a command's options.\n",
            cli_global_help);
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option global_options[] = {CLI_GLOBAL_LONG_OPTIONS, {0, 0, 0, 0}};
    cli_ctx ctx = {.prog = "sweepctl"};
    int c;

    /* Global options stop at the first non-option, the subcommand name. */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", global_options, NULL)) != -1) {
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            return cli_usage_error(NULL, "unknown or incomplete option '%s'", bad);
        }
        if (cli_global_option(&ctx, NULL, c, optarg) < 0) {
            print_main_help(stdout);
            return CLI_EXIT_OK;
        }
    }

    if (optind >= argc) {
        print_main_help(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[optind], "help") == 0) {
        const cli_command *cmd = optind + 1 < argc ? find_command(argv[optind + 1]) : NULL;
        if (cmd != NULL)
            cli_print_command_help(cmd, stdout);
        else
            print_main_help(stdout);
        return CLI_EXIT_OK;
    }

    const cli_command *cmd = find_command(argv[optind]);
    if (cmd == NULL)
        return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);

    /* Each handler parses its own options from a fresh getopt state. */
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0;
    return cmd->run(&ctx, cmd, sub_argc, sub_argv);
}
