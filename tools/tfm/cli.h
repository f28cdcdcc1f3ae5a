/* cli.h — the tfm command's subcommands; each lives in its own file. */
#ifndef TFM_CLI_H
#define TFM_CLI_H

int cmd_forward(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_translate(int argc, char **argv);

/* Print "tfm <cmd>: <message>" on stderr and return 1 (the exit status). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
