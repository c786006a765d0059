/* `sweep-train optim-trace`: runs one optimizer on a single tensor given as
 * JSON on stdin and prints the parameters after every step, so tests can
 * compare the training code with independent references step by step.
 */
#ifndef SWEEPD_OPTIM_TRACE_H
#define SWEEPD_OPTIM_TRACE_H

/* One line of usage for a program's --help, listing the subcommand. */
#define OPTIM_TRACE_SUMMARY \
    "  optim-trace --optimizer NAME [--set name=value ...] < input.json\n" \
    "      apply one optimizer step per gradient to one tensor; see optim-trace --help\n"

/* Runs the subcommand; argv[0] is "optim-trace". Reads stdin, writes one JSON
 * line per step to stdout and errors to stderr. Returns the exit status:
 * 0 on success, 1 for invalid input or a failed optimizer, 2 for a usage
 * error. */
int optim_trace_main(int argc, char **argv);

#endif
